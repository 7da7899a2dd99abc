"""Rollback goes back down the journal (a stack of approved holders) through the outbox,
never forward to a version that was rolled back; on SQLite and PostgreSQL, real MLflow."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from mlops.client import RegistryClient
from mlops.errors import NothingToRollBack
from registry_server.services.faults import POINTS
from registry_server.services.outbox import apply_intents
from tests.server._procs import ADMIN, alias_writes, start_registry, wait_until
from tests.server.conftest import Server


def _promote(server: Server, name: str, approvers: tuple[str, str] = ("ann", "bob")) -> int:
    version = server.model.register(name)
    digest = server.model.record(name, version)
    res = server.request(name, version, digest)
    assert res.status_code == 201, res.json()
    for user in approvers:
        res = server.approve(res.json()["id"], user)
    assert res.json()["state"] == "promoted", res.json()
    return version


def _rollback(server: Server, name: str, user: str = "bob", comment: str = "") -> httpx.Response:
    return server.post(f"/v1/aliases/{name}/production/rollback", user, {"comment": comment})


def _mlflow_holder(server: Server, name: str) -> int:
    return int(server.model.client().get_model_version_by_alias(name, "production").version)


def _history(server: Server, name: str) -> list[tuple[int, str]]:
    items = server.client.get(f"/v1/aliases/{name}/production/history").json()["items"]
    return [(i["version"], i["action"]) for i in items]


def _events(server: Server, action: str, name: str) -> list[dict]:
    items = server.client.get("/v1/audit?limit=1000", headers=server.h("root")).json()["items"]
    return [e for e in items if e["action"] == action and e["payload"].get("model") == name]


def test_rollback_of_a_rollback_is_refused(server: Server, name: str) -> None:
    v1 = _promote(server, name)
    v2 = _promote(server, name)
    assert _rollback(server, name).json()["version"] == v1

    again = _rollback(server, name, "ann")

    assert again.status_code == 409, again.json()
    body = again.json()
    assert body["code"] == "nothing_to_roll_back"
    assert f"v{v1} was reached by a rollback" in body["message"]
    assert "nothing to roll back to" in body["message"]
    assert "POST /v1/promotions" in body["hint"]
    assert _mlflow_holder(server, name) == v1  # v2 did not come back on one person's word
    assert _history(server, name) == [(v1, "rollback"), (v2, "promote"), (v1, "promote")]


def test_rollback_goes_down_the_stack_never_forward(server: Server, name: str) -> None:
    v1, v2, v3 = (_promote(server, name) for _ in range(3))
    assert _rollback(server, name).json()["version"] == v2
    assert _rollback(server, name).json()["version"] == v1  # not back up to v3
    assert _mlflow_holder(server, name) == v1
    res = _rollback(server, name)
    assert res.status_code == 409 and res.json()["code"] == "nothing_to_roll_back"
    assert [v for v, _ in _history(server, name)] == [v1, v2, v3, v2, v1]


def test_going_forward_again_takes_a_new_request(server: Server, name: str) -> None:
    v1 = _promote(server, name)
    v2 = server.model.register(name)
    digest = server.model.record(name, v2)  # judged against v1
    rid = server.request(name, v2, digest).json()["id"]
    server.approve(rid, "ann")
    assert server.approve(rid, "bob").json()["state"] == "promoted"
    assert _rollback(server, name).json()["version"] == v1

    again = server.request(name, v2, digest)  # still judged against v1, which holds again
    assert again.status_code == 201, again.json()
    server.approve(again.json()["id"], "ann")
    assert server.approve(again.json()["id"], "root").json()["state"] == "promoted"
    assert _mlflow_holder(server, name) == v2


def test_rollback_audit_events(server: Server, name: str) -> None:
    v1 = _promote(server, name)
    v2 = _promote(server, name)

    assert _rollback(server, name, comment="latency regression").status_code == 200

    (requested,) = _events(server, "rollback_requested", name)
    (done,) = _events(server, "rolled_back", name)
    for event in (requested, done):
        assert event["actor"] == "bob"
        assert event["payload"]["from_version"] == v2 and event["payload"]["to_version"] == v1
        assert event["payload"]["comment"] == "latency regression"
    assert requested["id"] < done["id"]
    assert server.client.get("/v1/audit/verify", headers=server.h("root")).json()["ok"] is True


def test_mlflow_outage_during_rollback_then_retry_moves_once(server: Server, name: str) -> None:
    v1 = _promote(server, name)
    v2 = _promote(server, name)
    server.ctx.gateway.fail_set_alias = 1

    res = _rollback(server, name)

    assert res.status_code == 503 and res.json()["code"] == "registry_unavailable"
    assert "is recorded" in res.json()["message"] and "No need" in res.json()["hint"]
    assert _mlflow_holder(server, name) == v2
    twice = _rollback(server, name, "ann")
    assert twice.status_code == 409 and "already recorded" in twice.json()["message"]

    server.clock.advance(seconds=60)
    assert apply_intents(server.ctx) == 1  # the background pass after the outage
    assert apply_intents(server.ctx) == 0
    assert _mlflow_holder(server, name) == v1
    assert _history(server, name) == [(v1, "rollback"), (v2, "promote"), (v1, "promote")]
    assert len(_events(server, "rolled_back", name)) == 1
    assert len(_events(server, "rollback_requested", name)) == 1


def test_rollback_ends_a_waiting_promotion_stale(server: Server, name: str) -> None:
    v1 = _promote(server, name)
    v2 = _promote(server, name)
    v3 = server.model.register(name)
    rid = server.request(name, v3, server.model.record(name, v3)).json()["id"]
    server.approve(rid, "ann")
    server.ctx.gateway.fail_set_alias = 1
    assert server.approve(rid, "bob").json()["state"] == "approved"  # move waits for MLflow

    assert _rollback(server, name).json()["version"] == v1

    req = server.client.get(f"/v1/promotions/{rid}").json()
    assert req["state"] == "stale"
    (event,) = [e for e in _events(server, "champion_changed", name)]
    assert event["payload"]["request_id"] == rid and event["payload"]["at_stage"] == "rollback"
    server.clock.advance(seconds=60)
    assert apply_intents(server.ctx) == 0
    assert _mlflow_holder(server, name) == v1
    assert [v for v, _ in _history(server, name)] == [v1, v2, v1]


def test_rollback_refuses_a_holder_whose_identity_changed(server: Server, name: str) -> None:
    v1 = _promote(server, name)
    v2 = _promote(server, name)
    client = server.model.client()  # v1's evidence re-tagged behind the server's back
    client.set_model_version_tag(name, str(v1), "mlops.evidence.digest", "f" * 64)

    res = _rollback(server, name)

    assert res.status_code == 409 and res.json()["code"] == "alias_holder_missing"
    assert f"version {v1}" in res.json()["message"]
    assert _mlflow_holder(server, name) == v2
    assert _history(server, name)[0] == (v2, "promote")
    assert _events(server, "rollback_requested", name) == []


def test_rollback_through_the_registry_client(server: Server, name: str) -> None:
    v1 = _promote(server, name)
    _promote(server, name)
    client = RegistryClient(http=server.client, token=server.tokens["bob"])

    assert client.rollback(name, "production", comment="latency").version == v1
    with pytest.raises(NothingToRollBack, match="nothing to roll back to") as info:
        client.rollback(name, "production")
    assert "promotion request" in info.value.hint


def _journal_rows(database_url: str, name: str) -> list[tuple[int, str]]:
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT version, action FROM alias_journal WHERE model = :m ORDER BY id"),
            {"m": name},
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_crash_during_rollback_then_restart_moves_once(
    point: str, server: Server, database_url: str, policy_file, name: str, tmp_path
) -> None:
    v1 = _promote(server, name)
    v2 = _promote(server, name)
    common = {
        "database_url": database_url,
        "tracking_uri": server.model.tracking_uri,
        "policy_file": policy_file,
    }
    first = start_registry(
        tmp_path, **common, fault_point=point, reconcile_interval=0, intent_lease=1
    )
    with first.api() as api, pytest.raises(httpx.TransportError):  # dies mid-request
        api.post(f"/v1/aliases/{name}/production/rollback", headers=server.h("bob"), json={})
    assert first.proc.wait(timeout=30) == -9
    assert alias_writes(first.log_text()) == (0 if point == "after_intent" else 1)

    second = start_registry(
        tmp_path, **common, reconcile_interval=0.3, intent_lease=1, log_name="second.log"
    )
    try:
        with second.api() as api:
            wait_until(lambda: api.get(f"/v1/aliases/{name}/production").json()["version"] == v1)
            admin = {"Authorization": f"Bearer {ADMIN}"}
            events = api.get("/v1/audit?limit=1000", headers=admin).json()["items"]
            mine = [e["action"] for e in events if e["payload"].get("model") == name]
            assert mine.count("rolled_back") == 1 and mine.count("rollback_requested") == 1
            assert api.get("/v1/audit/verify", headers=admin).json()["ok"] is True
    finally:
        second.stop()
    assert _journal_rows(database_url, name) == [(v1, "promote"), (v2, "promote"), (v1, "rollback")]
    assert _mlflow_holder(server, name) == v1
    assert alias_writes(second.log_text()) == (0 if point == "after_final" else 1)
