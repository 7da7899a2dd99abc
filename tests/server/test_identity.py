"""A holder is who was promoted, not a version number: a deleted and re-registered name, or a
deleted holder version, is never put back in a protected alias; the alias is flagged for a
person instead. Real MLflow (SQLite store), server on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mlops.errors import AliasHolderMissing
from registry_server.app import reconcile_once
from registry_server.db.models import AliasJournal
from registry_server.services.holders import check_holder, holder_identity_ok
from tests.server.conftest import Server


def _promote(server: Server, name: str) -> int:
    version = server.model.register(name)
    digest = server.model.record(name, version)
    res = server.request(name, version, digest)
    assert res.status_code == 201, res.json()
    for user in ("ann", "bob"):
        res = server.approve(res.json()["id"], user)
    assert res.json()["state"] == "promoted", res.json()
    return version


def _holder_row(server: Server, name: str) -> AliasJournal:
    with server.ctx.db.read_sessions() as s:
        return s.scalar(
            select(AliasJournal).where(
                AliasJournal.model == name,
                AliasJournal.alias == "production",
                AliasJournal.to_at.is_(None),
            )
        )


def _events(server: Server, action: str, name: str) -> list[dict]:
    items = server.client.get("/v1/audit?limit=1000", headers=server.h("root")).json()["items"]
    return [e for e in items if e["action"] == action and e["payload"].get("model") == name]


def _aliases(server: Server, name: str) -> dict[str, int]:
    return {a: int(v) for a, v in server.model.client().get_registered_model(name).aliases.items()}


def _recreate(server: Server, name: str) -> int:
    """The attack: delete the registered model and register another under the same name."""
    server.model.client().delete_registered_model(name)
    return server.model.register(name)


def test_journal_records_who_the_holder_is(server: Server, name: str) -> None:
    version = _promote(server, name)
    row = _holder_row(server, name)
    mv = server.model.client().get_model_version(name, str(version))
    rm = server.model.client().get_registered_model(name)
    assert row.run_id == mv.run_id == server.model.run_id
    assert row.evidence_digest == mv.tags["mlops.evidence.digest"]
    assert row.version_created_ms == mv.creation_timestamp
    assert row.model_created_ms == rm.creation_timestamp
    assert holder_identity_ok(server.ctx, row)


def test_recreated_name_with_the_same_version_number_is_not_restored(
    server: Server, name: str
) -> None:
    version = _promote(server, name)
    new_version = _recreate(server, name)
    assert new_version == version  # same number, different model

    assert reconcile_once(server.ctx)["restored"] == 1

    assert _aliases(server, name) == {}  # nothing pointed at the impostor
    [event] = _events(server, "alias_holder_missing", name)
    assert event["actor"] == "system"
    assert event["payload"]["version"] == version
    assert "registered-model creation time" in event["payload"]["problem"]
    assert event["payload"]["removed"] is False
    alias = server.client.get(f"/v1/aliases/{name}/production").json()
    assert alias["attention"] == "alias_holder_missing"
    assert alias["version"] == version  # the journal is not rewritten: a person decides
    ready = server.client.get("/readyz").json()
    assert {"model": name, "alias": "production", "version": version} == {
        k: v for k, v in ready["attention"][0].items() if k in ("model", "alias", "version")
    }
    assert ready["attention"][0]["reason"] == "alias_holder_missing"

    assert reconcile_once(server.ctx)["restored"] == 0  # flagged once, nothing written
    assert _aliases(server, name) == {}
    assert len(_events(server, "alias_holder_missing", name)) == 1
    assert server.client.get("/v1/audit/verify", headers=server.h("root")).json()["ok"]


def test_impostor_given_the_alias_under_the_recorded_number_is_removed(
    server: Server, name: str
) -> None:
    """The attacker re-creates the name and sets ``production`` on the new version 1
    themselves: MLflow then shows exactly the journal's number."""
    version = _promote(server, name)
    _recreate(server, name)
    server.model.client().set_registered_model_alias(name, "production", str(version))

    assert reconcile_once(server.ctx)["restored"] == 1

    assert _aliases(server, name) == {}
    [event] = _events(server, "alias_holder_missing", name)
    assert event["payload"]["found_version"] == version
    assert event["payload"]["removed"] is True
    assert not _events(server, "alias_drift_restored", name)

    server.model.client().set_registered_model_alias(name, "production", str(version))
    assert reconcile_once(server.ctx)["restored"] == 1  # flagged: nothing backs the alias
    assert _aliases(server, name) == {}
    [removed] = _events(server, "alias_unbacked_removed", name)
    assert removed["payload"]["journal"] == "needs attention"


def test_deleted_holder_version_is_flagged_not_replaced(server: Server, name: str) -> None:
    version = _promote(server, name)
    other = server.model.register(name)
    server.model.client().delete_model_version(name, str(version))  # the alias goes with it

    assert reconcile_once(server.ctx)["restored"] == 1

    assert _aliases(server, name) == {}  # not moved to `other`, not to anything
    [event] = _events(server, "alias_holder_missing", name)
    assert "no longer exists" in event["payload"]["problem"]
    assert server.client.get(f"/v1/aliases/{name}/production").json()["attention"] == (
        "alias_holder_missing"
    )
    assert other != version


def test_check_holder_refuses_a_changed_holder(server: Server, name: str) -> None:
    _promote(server, name)
    row = _holder_row(server, name)
    check_holder(server.ctx, row)  # intact: no error
    _recreate(server, name)
    with pytest.raises(AliasHolderMissing, match=r"Cannot point .*@production at version 1: "):
        check_holder(server.ctx, row)
    assert not holder_identity_ok(server.ctx, row)


def test_retagged_evidence_is_a_changed_holder(server: Server, name: str) -> None:
    version = _promote(server, name)
    row = _holder_row(server, name)
    server.model.client().set_model_version_tag(
        name, str(version), "mlops.evidence.digest", "f" * 64
    )
    with pytest.raises(AliasHolderMissing, match=r"evidence digest 'f{64}'"):
        check_holder(server.ctx, row)
