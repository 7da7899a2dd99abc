"""Promotion ladders on real MLflow (SQLite and PostgreSQL): ``production`` needs the version
to have held ``staging`` for 2s first; the request waits, blocked by ``soak``, and takes
approvals once the (injected) clock has passed it; a rollback from ``staging`` meanwhile
voids it. Approvals near their ttl show up as ``expiring``."""

from __future__ import annotations

from pathlib import Path

from tests.server.conftest import LADDER, MlflowModel, Server, make_server


def to_staging(srv: Server, name: str) -> tuple[int, str]:
    """Register a version, record its evidence and put it in ``staging`` (no approval)."""
    version = srv.model.register(name)
    digest = srv.model.record(name, version)
    res = srv.request(name, version, digest, target="staging")
    assert res.status_code == 201 and res.json()["state"] == "promoted", res.json()
    return version, digest


def _events(srv: Server, action: str) -> list[dict]:
    items = srv.client.get("/v1/audit?limit=1000", headers=srv.h("root")).json()["items"]
    return [e for e in items if e["action"] == action]


def test_a_version_not_in_staging_may_not_ask_for_production(ladder: Server, name: str) -> None:
    version = ladder.model.register(name)
    digest = ladder.model.record(name, version)

    res = ladder.request(name, version, digest)

    assert res.status_code == 422, res.json()
    body = res.json()
    assert body["code"] == "policy_violation"
    assert "requires.held: does not hold 'staging'" in body["message"]
    assert "Promote v" in body["hint"] and "'staging' first" in body["hint"]


def test_the_soak_blocks_then_allows(ladder: Server, name: str) -> None:
    version, digest = to_staging(ladder, name)
    res = ladder.request(name, version, digest)
    assert res.status_code == 201, res.json()
    rid = res.json()["id"]
    body = res.json()
    assert body["state"] == "pending"
    assert body["soak"]["held"] == "staging" and body["soak"]["left_seconds"] == 2.0
    assert body["blocked_by"] == [
        "soak: held staging for 0s of 2s: 2s left",
        "approvals: 0 of 2 required",
    ]

    early = ladder.approve(rid, "ann")
    assert early.status_code == 409, early.json()
    assert early.json()["code"] == "soak_pending"
    assert "held staging for 0s of 2s: 2s left" in early.json()["message"]

    ladder.clock.advance(seconds=1)
    listed = ladder.client.get(f"/v1/promotions?model={name}&target=production").json()
    assert listed["items"][0]["soak"]["left_seconds"] == 1.0  # read time, no poke needed
    assert listed["items"][0]["blocked_by"][0] == "soak: held staging for 1s of 2s: 1s left"

    ladder.clock.advance(seconds=1.5)
    after = ladder.client.get(f"/v1/promotions/{rid}").json()
    assert after["state"] == "pending"
    assert after["soak"]["done"] is True and after["soak"]["left_seconds"] == 0.0
    assert after["blocked_by"] == ["approvals: 0 of 2 required"]
    assert ladder.approve(rid, "ann").json()["quorum"] == {"have": 1, "need": 2}
    done = ladder.approve(rid, "bob").json()
    assert done["state"] == "promoted", done
    holder = ladder.model.client().get_model_version_by_alias(name, "production")
    assert int(holder.version) == version


def test_approvals_near_their_ttl_are_flagged(ladder: Server, name: str) -> None:
    version, digest = to_staging(ladder, name)
    rid = ladder.request(name, version, digest).json()["id"]
    ladder.clock.advance(seconds=3)
    ladder.approve(rid, "ann")

    ladder.clock.advance(minutes=30)
    assert ladder.client.get(f"/v1/promotions/{rid}").json()["expiring"] == []

    ladder.clock.advance(minutes=20)  # 10 minutes left of the 1h ttl: in its last quarter
    body = ladder.client.get(f"/v1/promotions/{rid}").json()
    assert [(w["user"], w["left_seconds"]) for w in body["expiring"]] == [("ann", 600.0)]
    assert body["quorum"] == {"have": 1, "need": 2}

    ladder.clock.advance(minutes=11)  # past the ttl: it no longer counts, no longer warns
    body = ladder.client.get(f"/v1/promotions/{rid}").json()
    assert body["expiring"] == [] and body["quorum"] == {"have": 0, "need": 2}


def test_a_rollback_from_staging_during_the_soak_voids_the_request(
    ladder: Server, name: str
) -> None:
    v1, _ = to_staging(ladder, name)
    v2, digest = to_staging(ladder, name)
    rid = ladder.request(name, v2, digest).json()["id"]

    res = ladder.post(f"/v1/aliases/{name}/staging/rollback", "bob", {"comment": "bad canary"})
    assert res.status_code == 200 and res.json()["version"] == v1, res.json()

    body = ladder.client.get(f"/v1/promotions/{rid}").json()
    assert body["state"] == "voided"
    assert body["soak"] is None and body["blocked_by"] == []
    (event,) = [e for e in _events(ladder, "ladder_voided") if e["payload"]["request_id"] == rid]
    assert event["payload"]["reason_code"] == "held_alias_rolled_back"
    assert event["payload"]["reason"] == (
        f"v{v2} was rolled back from 'staging' before the promotion to 'production'"
    )
    assert event["payload"]["policy_digest"] == ladder.ctx.policy.digest
    for action in ("rollback_requested", "rolled_back"):  # the rollback decision too
        (moved,) = [e for e in _events(ladder, action) if e["payload"]["model"] == name]
        assert moved["payload"]["policy_digest"] == ladder.ctx.policy.digest
    ladder.clock.advance(seconds=3)
    late = ladder.approve(rid, "ann")
    assert late.status_code == 409 and late.json()["code"] == "conflict", late.json()
    assert "is voided, not pending" in late.json()["message"]


def test_a_newer_staging_version_voids_the_older_ones_request(ladder: Server, name: str) -> None:
    v1, digest = to_staging(ladder, name)
    rid = ladder.request(name, v1, digest).json()["id"]

    to_staging(ladder, name)

    assert ladder.client.get(f"/v1/promotions/{rid}").json()["state"] == "voided"
    (event,) = [e for e in _events(ladder, "ladder_voided") if e["payload"]["request_id"] == rid]
    assert event["payload"]["reason_code"] == "held_alias_replaced"


def test_a_ladder_step_without_approvals_moves_once_soaked(
    database_url: str, tmp_path: Path, mlflow_model: MlflowModel, name: str
) -> None:
    from registry_server.app import reconcile_once

    policy = tmp_path / "promotion-policy.yaml"
    policy.write_text(LADDER.replace("approvals: {count: 2,", "approvals: {count: 0,"))
    srv = make_server(database_url, policy, mlflow_model, name)
    try:
        version, digest = to_staging(srv, name)
        rid = srv.request(name, version, digest).json()["id"]
        assert reconcile_once(srv.ctx)["soaked"] == 0  # still soaking: nothing moves
        assert srv.client.get(f"/v1/promotions/{rid}").json()["state"] == "pending"

        srv.clock.advance(seconds=2)
        assert reconcile_once(srv.ctx)["soaked"] == 1
        assert reconcile_once(srv.ctx)["soaked"] == 0  # once

        assert srv.client.get(f"/v1/promotions/{rid}").json()["state"] == "promoted"
        holder = srv.model.client().get_model_version_by_alias(name, "production")
        assert int(holder.version) == version
    finally:
        srv.close()
