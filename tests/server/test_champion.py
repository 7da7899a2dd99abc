"""A request is bound to the champion its verdict was judged against; when the holder moves,
the request is refused or ends stale, on SQLite and PostgreSQL, against real MLflow."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text

from registry_server.services.outbox import apply_intents
from tests.server._procs import alias_writes, start_registry, wait_until
from tests.server.conftest import Server, canonical, evidence_bundle


def _version(server: Server, name: str, **evidence) -> tuple[int, str]:
    """A new version with evidence judged against the ``production`` holder now."""
    version = server.model.register(name)
    return version, server.model.record(name, version, **evidence)


def _promote(server: Server, name: str) -> int:
    version, digest = _version(server, name)
    rid = server.request(name, version, digest).json()["id"]
    server.approve(rid, "ann")
    assert server.approve(rid, "bob").json()["state"] == "promoted"
    return version


def _mlflow_holder(server: Server, name: str) -> int:
    return int(server.model.client().get_model_version_by_alias(name, "production").version)


def _events(server: Server, action: str, name: str) -> list[dict]:
    items = server.client.get("/v1/audit?limit=1000", headers=server.h("root")).json()["items"]
    return [e for e in items if e["action"] == action and e["payload"].get("model") == name]


def test_evidence_judged_without_champion_is_refused_once_one_holds(
    server: Server, name: str
) -> None:
    old, old_digest = _version(server, name)  # evaluated while nobody held production
    newer = _promote(server, name)

    res = server.request(name, old, old_digest)

    assert res.status_code == 409, res.json()
    body = res.json()
    assert body["code"] == "champion_changed"
    assert f"judged against no holder of {name}@production" in body["message"]
    assert f"now {name}@production v{newer}" in body["message"]
    assert "Evaluate" in body["hint"] and "POST /v1/promotions" in body["hint"]
    listed = server.client.get(f"/v1/promotions?model={name}").json()["items"]
    assert [p["version"] for p in listed] == [newer]  # nothing was opened
    assert _mlflow_holder(server, name) == newer


def test_request_records_the_champion_it_is_bound_to(server: Server, name: str) -> None:
    first = _promote(server, name)
    version, digest = _version(server, name)
    res = server.request(name, version, digest)
    assert res.status_code == 201, res.json()
    assert res.json()["champion"] == {"version": first, "run_id": server.model.run_id}
    staging = server.request(name, version, digest, target="staging")  # no champion rule
    assert staging.status_code == 201 and staging.json()["champion"] is None


def test_champion_rolled_back_between_two_approvals(server: Server, name: str) -> None:
    v1 = _promote(server, name)
    v2 = _promote(server, name)
    v3, digest = _version(server, name)  # judged against v2
    rid = server.request(name, v3, digest).json()["id"]
    assert server.approve(rid, "ann").json()["quorum"]["have"] == 1
    assert server.post(f"/v1/aliases/{name}/production/rollback", "bob").json()["version"] == v1

    res = server.approve(rid, "root")

    assert res.status_code == 409 and res.json()["code"] == "champion_changed"
    assert f"judged against {name}@production v{v2}" in res.json()["message"]
    assert "approvals no longer count" in res.json()["message"]
    req = server.client.get(f"/v1/promotions/{rid}").json()
    assert req["state"] == "stale" and req["blocked_by"] == []
    (event,) = _events(server, "champion_changed", name)
    assert event["payload"]["request_id"] == rid and event["payload"]["at_stage"] == "approval"
    assert _mlflow_holder(server, name) == v1
    again = server.approve(rid, "dan")
    assert again.status_code == 409 and "stale, not pending" in again.json()["message"]


def test_champion_moved_between_quorum_and_the_move(server: Server, name: str) -> None:
    first, d1 = _version(server, name)  # both judged while nobody held production
    second, d2 = _version(server, name)
    r1 = server.request(name, first, d1).json()["id"]
    server.approve(r1, "ann")
    server.ctx.gateway.fail_set_alias = 1  # MLflow down: r1's move waits in the outbox
    assert server.approve(r1, "bob").json()["state"] == "approved"
    r2 = server.request(name, second, d2).json()["id"]  # r1 is approved, not superseded
    server.approve(r2, "ann")
    server.ctx.gateway.fail_set_alias = 1
    assert server.approve(r2, "bob").json()["state"] == "approved"

    server.clock.advance(seconds=60)
    assert apply_intents(server.ctx) == 1  # the retry pass after the outage

    assert server.client.get(f"/v1/promotions/{r1}").json()["state"] == "promoted"
    assert server.client.get(f"/v1/promotions/{r2}").json()["state"] == "stale"
    assert _mlflow_holder(server, name) == first  # never replaced by an uncompared version
    (event,) = _events(server, "champion_changed", name)
    assert event["payload"]["request_id"] == r2 and event["payload"]["at_stage"] == "alias_move"
    assert f"now {name}@production v{first}" in event["payload"]["reason"]
    history = server.client.get(f"/v1/aliases/{name}/production/history").json()["items"]
    assert [h["version"] for h in history] == [first]


def _record_bundle(server: Server, name: str, version: int, bundle: dict) -> str:
    digest = hashlib.sha256(canonical(bundle)).hexdigest()
    path = f"mlops/evidence/{digest}.json"
    client = server.model.client()
    client.log_text(server.model.run_id, canonical(bundle).decode(), path)
    client.set_model_version_tag(name, str(version), "mlops.evidence.digest", digest)
    client.set_model_version_tag(name, str(version), "mlops.evidence.path", path)
    return digest


def test_old_evidence_without_the_champions_run_is_refused(server: Server, name: str) -> None:
    champ = _promote(server, name)
    version = server.model.register(name)
    bundle = evidence_bundle(name, version, server.model.run_id, champion=0.9)
    bundle["evaluation"]["champion_version"] = champ
    del bundle["evaluation"]["champion_run_id"]  # written before run ids were recorded

    res = server.request(name, version, _record_bundle(server, name, version, bundle))

    assert res.status_code == 422 and res.json()["code"] == "evidence_error"
    assert f"names champion v{champ}" in res.json()["message"]
    assert "Evaluate" in res.json()["hint"]
    del bundle["evaluation"]["champion_version"]
    res = server.request(name, version, _record_bundle(server, name, version, bundle))
    assert res.status_code == 422 and "does not say which champion" in res.json()["message"]


def test_evidence_naming_the_champion_with_another_run_is_refused(
    server: Server, name: str
) -> None:
    champ = _promote(server, name)
    version = server.model.register(name)
    digest = server.model.record(name, version, champion_version=champ, champion_run_id="0" * 32)

    res = server.request(name, version, digest)

    assert res.status_code == 409 and res.json()["code"] == "champion_changed"
    assert f"run {server.model.run_id}" in res.json()["message"]


def test_request_opened_before_binding_ends_stale(server: Server, name: str) -> None:
    version, digest = _version(server, name)
    rid = server.request(name, version, digest).json()["id"]
    with server.ctx.db.session() as s:  # as a row written before migration 0003
        s.execute(text("UPDATE promotion_requests SET champion = NULL WHERE id = :i"), {"i": rid})

    res = server.approve(rid, "ann")

    assert res.status_code == 409 and res.json()["code"] == "champion_changed"
    assert "opened before champions were bound" in res.json()["message"]
    assert server.client.get(f"/v1/promotions/{rid}").json()["state"] == "stale"


def test_evidence_naming_the_champion_without_its_scores_is_refused(
    server: Server, name: str
) -> None:
    champ = _promote(server, name)
    version = server.model.register(name)
    bundle = evidence_bundle(
        name,
        version,
        server.model.run_id,
        champion_version=champ,
        champion_run_id=server.model.run_id,
    )
    bundle["evaluation"]["metrics"]["champion"] = None  # "no champion holds the alias yet"

    res = server.request(name, version, _record_bundle(server, name, version, bundle))

    assert res.status_code == 422 and res.json()["code"] == "evidence_error"
    assert f"names champion v{champ}" in res.json()["message"]
    assert "no champion metrics" in res.json()["message"]
    assert _mlflow_holder(server, name) == champ


@pytest.mark.slow
def test_champion_moved_while_the_server_was_down_after_quorum(
    server: Server, database_url: str, policy_file, name: str, tmp_path
) -> None:
    server.clock.now = datetime.now(UTC)  # the server processes below run on the real clock
    first, d1 = _version(server, name)  # both judged while nobody held production
    second, d2 = _version(server, name)
    r1 = server.request(name, first, d1).json()["id"]
    server.approve(r1, "ann")
    common = {
        "database_url": database_url,
        "tracking_uri": server.model.tracking_uri,
        "policy_file": policy_file,
    }
    crashing = start_registry(tmp_path, **common, fault_point="after_intent", reconcile_interval=0)
    with crashing.api() as api, pytest.raises(httpx.TransportError):  # quorum, intent, crash
        api.post(f"/v1/promotions/{r1}/approve", headers=server.h("bob"), json={})
    assert crashing.proc.wait(timeout=30) == -9
    r2 = server.request(name, second, d2).json()["id"]  # r1 is approved, not superseded
    server.approve(r2, "ann")
    assert server.approve(r2, "bob").json()["state"] == "promoted"

    restarted = start_registry(
        tmp_path, **common, reconcile_interval=0.3, intent_lease=1, log_name="second.log"
    )
    try:
        with restarted.api() as api:
            wait_until(lambda: api.get(f"/v1/promotions/{r1}").json()["state"] == "stale")
    finally:
        restarted.stop()
    assert _mlflow_holder(server, name) == second
    assert alias_writes(restarted.log_text()) == 0
    (event,) = _events(server, "champion_changed", name)
    assert event["payload"]["request_id"] == r1 and event["payload"]["at_stage"] == "alias_move"
    assert [e["payload"]["request_id"] for e in _events(server, "promoted", name)] == [r2]
