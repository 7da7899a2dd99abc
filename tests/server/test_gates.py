"""The gate rules, enforced by the server, on SQLite and PostgreSQL, against real MLflow."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.server.conftest import Server


def _request(server: Server, name: str, **evidence) -> tuple[int, str, int]:
    version = server.model.register(name)
    digest = server.model.record(name, version, **evidence)
    res = server.request(name, version, digest)
    assert res.status_code == 201, res.json()
    return res.json()["id"], digest, version


def _events(server: Server, action: str) -> list[dict]:
    items = server.client.get("/v1/audit?limit=1000", headers=server.h("root")).json()["items"]
    return [e for e in items if e["action"] == action]


def test_whole_flow_moves_the_alias_in_mlflow(server: Server, name: str) -> None:
    rid, digest, version = _request(server, name)
    body = server.client.get(f"/v1/promotions/{rid}").json()
    assert body["state"] == "pending"
    assert body["verdict"]["passed"] is True
    assert body["quorum"] == {"have": 0, "need": 2}
    assert body["blocked_by"] == ["approvals: 0 of 2 required"]

    first = server.approve(rid, "ann", "looks good").json()
    assert first["state"] == "pending"
    assert first["quorum"] == {"have": 1, "need": 2}
    assert first["approvals"][0] | {"at": None} == {
        "user": "ann",
        "decision": "approve",
        "comment": "looks good",
        "digest": digest,
        "at": None,
        "counts": True,
        "why_not": None,
        "policy_digest": server.ctx.policy.digest,
    }
    done = server.approve(rid, "bob").json()
    assert done["state"] == "promoted"
    assert done["blocked_by"] == []

    mv = server.model.client().get_model_version_by_alias(name, "production")
    assert int(mv.version) == version
    alias = server.client.get(f"/v1/aliases/{name}/production").json()
    assert alias["version"] == version
    assert alias["request_id"] == rid
    history = server.client.get(f"/v1/aliases/{name}/production/history").json()["items"]
    assert [(i["version"], i["to"], i["action"]) for i in history] == [(version, None, "promote")]
    promoted = [e for e in _events(server, "promoted") if e["payload"]["model"] == name]
    assert len(promoted) == 1
    requested = next(e for e in _events(server, "requested") if e["payload"]["model"] == name)
    assert requested["actor"] == "rita"
    assert requested["payload"]["policy_digest"] == server.ctx.policy.digest
    verify = server.client.get("/v1/audit/verify", headers=server.h("root")).json()
    assert verify["ok"] is True and verify["first_bad_id"] is None and verify["count"] >= 4


def test_requester_cannot_approve_own_request(server: Server, name: str) -> None:
    version = server.model.register(name)
    digest = server.model.record(name, version)
    rid = server.request(name, version, digest, user="dan").json()["id"]
    res = server.approve(rid, "dan")
    assert res.status_code == 403
    assert res.json()["code"] == "forbidden"
    assert "requested promotion" in res.json()["message"]


def test_same_person_twice_is_a_conflict(server: Server, name: str) -> None:
    rid, _, _ = _request(server, name)
    assert server.approve(rid, "ann").status_code == 200
    res = server.approve(rid, "ann")
    assert res.status_code == 409
    assert res.json()["code"] == "conflict"
    assert "already approved" in res.json()["message"]
    assert server.client.get(f"/v1/promotions/{rid}").json()["quorum"]["have"] == 1


def test_wrong_role_cannot_approve(server: Server, name: str) -> None:
    rid, _, _ = _request(server, name)
    res = server.approve(rid, "rita")
    assert res.status_code == 403
    assert "needs one of ['approver', 'admin']" in res.json()["message"]


def test_changed_evidence_voids_earlier_approvals(server: Server, name: str) -> None:
    rid, old, version = _request(server, name)
    assert server.approve(rid, "ann").status_code == 200
    new = server.model.record(name, version, accuracy=0.97)
    assert new != old
    res = server.approve(rid, "bob")
    assert res.status_code == 409
    assert res.json()["code"] == "evidence_mismatch"
    assert "changed since request" in res.json()["message"]
    # a request naming the old digest is refused, the new one supersedes the old request
    stale = server.request(name, version, old)
    assert stale.status_code == 409 and stale.json()["code"] == "evidence_mismatch"
    fresh = server.request(name, version, new).json()
    assert fresh["quorum"] == {"have": 0, "need": 2}
    assert server.client.get(f"/v1/promotions/{rid}").json()["state"] == "superseded"


def test_expired_approval_stops_counting(server: Server, name: str) -> None:
    rid, _, _ = _request(server, name)
    assert server.approve(rid, "ann").status_code == 200
    server.clock.advance(hours=73)
    body = server.approve(rid, "bob").json()
    assert body["state"] == "pending"
    assert body["quorum"] == {"have": 1, "need": 2}
    ann = next(a for a in body["approvals"] if a["user"] == "ann")
    assert ann["counts"] is False
    assert "older than the approval ttl" in ann["why_not"]
    # ann approves again: a fresh approval counts, the quorum is reached
    assert server.approve(rid, "ann").json()["state"] == "promoted"


def test_freeze_window_blocks_approval(server: Server, name: str) -> None:
    rid, _, _ = _request(server, name)
    server.clock.now = datetime(2026, 12, 25, 9, 0, tzinfo=UTC)
    res = server.approve(rid, "ann")
    assert res.status_code == 409
    assert res.json()["code"] == "freeze_window"
    assert "holidays" in res.json()["message"]
    assert any(
        "freeze" in b for b in server.client.get(f"/v1/promotions/{rid}").json()["blocked_by"]
    )


def test_no_token_and_bad_token(server: Server, name: str) -> None:
    body = {"model": name, "version": 1, "target": "production", "evidence_digest": "a" * 64}
    res = server.client.post("/v1/promotions", json=body)
    assert res.status_code == 401 and res.json()["code"] == "unauthenticated"
    res = server.client.post(
        "/v1/promotions", json=body, headers={"Authorization": "Bearer not-a-token"}
    )
    assert res.status_code == 401 and "unknown or revoked" in res.json()["message"]


def test_version_that_does_not_exist(server: Server, name: str) -> None:
    server.model.register(name)
    res = server.request(name, 42, "a" * 64)
    assert res.status_code == 404
    assert res.json()["code"] == "model_version_not_found"
    assert "no version 42" in res.json()["message"]


def test_target_unknown_to_the_policy(server: Server, name: str) -> None:
    version = server.model.register(name)
    digest = server.model.record(name, version)
    res = server.request(name, version, digest, target="moon")
    assert res.status_code == 422
    assert res.json()["code"] == "policy_violation"
    assert res.json()["details"]["rules"][0]["rule"] == "target.known"


def test_failing_verdict_is_refused_naming_the_rules(server: Server, name: str) -> None:
    version = server.model.register(name)
    digest = server.model.record(name, version, accuracy=0.5, smoke_ok=False)
    res = server.request(name, version, digest)
    assert res.status_code == 422
    body = res.json()
    assert body["code"] == "policy_violation"
    failed = {r["rule"] for r in body["details"]["rules"]}
    assert failed == {"checks.metrics.accuracy", "checks.smoke_test"}
    assert "0.5 is not >= threshold 0.8" in body["message"]


def test_digest_in_request_must_match(server: Server, name: str) -> None:
    version = server.model.register(name)
    server.model.record(name, version)
    res = server.request(name, version, "b" * 64)
    assert res.status_code == 409
    assert res.json()["code"] == "evidence_mismatch"


def test_version_without_evidence(server: Server, name: str) -> None:
    version = server.model.register(name)
    res = server.request(name, version, "b" * 64)
    assert res.status_code == 422
    assert res.json()["code"] == "evidence_error"
    assert "no recorded evidence" in res.json()["message"]


def test_cancel_only_by_requester_or_admin(server: Server, name: str) -> None:
    rid, _, _ = _request(server, name)
    res = server.post(f"/v1/promotions/{rid}/cancel", "ann")
    assert res.status_code == 403
    assert "only the requester or an admin" in res.json()["message"]
    assert server.post(f"/v1/promotions/{rid}/cancel", "rita").json()["state"] == "cancelled"
    res = server.approve(rid, "ann")
    assert res.status_code == 409 and "cancelled, not pending" in res.json()["message"]


def test_reject(server: Server, name: str) -> None:
    rid, _, _ = _request(server, name)
    assert server.post(f"/v1/promotions/{rid}/reject", "rita").status_code == 403
    body = server.post(f"/v1/promotions/{rid}/reject", "ann", {"comment": "no"}).json()
    assert body["state"] == "rejected"
    assert body["approvals"][0]["decision"] == "reject"


def test_list_filters_and_pages(server: Server, name: str) -> None:
    first, _, _ = _request(server, name)
    second, _, _ = _request(server, name)
    page = server.client.get(f"/v1/promotions?model={name}&limit=1").json()
    assert (
        page["total"] == 2 and page["limit"] == 1 and [i["id"] for i in page["items"]] == [second]
    )
    sup = server.client.get(f"/v1/promotions?model={name}&state=superseded").json()
    assert [i["id"] for i in sup["items"]] == [first]
    bad = server.client.get("/v1/promotions?state=bogus")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"


def test_rollback_to_previous_holder(server: Server, name: str) -> None:
    rid1, _, v1 = _request(server, name)
    server.approve(rid1, "ann")
    assert server.approve(rid1, "bob").json()["state"] == "promoted"
    rid2, _, v2 = _request(server, name, accuracy=0.96, champion=0.95)  # strictly better
    server.approve(rid2, "ann")
    assert server.approve(rid2, "root").json()["state"] == "promoted"
    assert server.client.get(f"/v1/aliases/{name}/production").json()["version"] == v2

    res = server.post(f"/v1/aliases/{name}/production/rollback", "rita", {"comment": "x"})
    assert res.status_code == 403
    back = server.post(f"/v1/aliases/{name}/production/rollback", "bob", {"comment": "bad"})
    assert back.status_code == 200, back.json()
    assert back.json()["version"] == v1
    assert int(server.model.client().get_model_version_by_alias(name, "production").version) == v1
    history = server.client.get(f"/v1/aliases/{name}/production/history").json()["items"]
    assert [(i["version"], i["action"]) for i in history] == [
        (v1, "rollback"),
        (v2, "promote"),
        (v1, "promote"),
    ]
    assert [h["to"] is None for h in history] == [True, False, False]
    assert any(e["payload"]["model"] == name for e in _events(server, "rolled_back"))


def test_rollback_without_previous_holder(server: Server, name: str) -> None:
    res = server.post(f"/v1/aliases/{name}/production/rollback", "bob")
    assert res.status_code == 404 and res.json()["code"] == "alias_not_found"
    rid, _, _ = _request(server, name)
    server.approve(rid, "ann")
    server.approve(rid, "bob")
    res = server.post(f"/v1/aliases/{name}/production/rollback", "bob")
    assert res.status_code == 409 and "nothing to roll back to" in res.json()["message"]


def _version_from_run_with_lineage(server: Server, name: str, md5: str) -> tuple[int, str]:
    """A version whose run recorded its training data the way ``mlops.start_run`` does."""
    from tests.server.conftest import tracking

    client = server.model.client()
    experiment = client.get_run(server.model.run_id).info.experiment_id
    run_id = client.create_run(experiment).info.run_id
    tags = {"mlops.dataset.count": "1", "mlops.dataset.0.path": "data/train.csv"}
    for key, value in (tags | {"mlops.dataset.0.md5": md5}).items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id)
    with tracking(server.model.tracking_uri):
        client.create_registered_model(name)
        mv = client.create_model_version(name, server.model.model_uri, run_id=run_id)
    return int(mv.version), run_id


def _record(server: Server, name: str, version: int, bundle: dict, run_id: str) -> str:
    from tests import _evidence

    assert (bundle["model"]["name"], bundle["model"]["version"]) == (name, version)
    return _evidence.record(server.model.client(), run_id, bundle)  # into the version's run


def test_evidence_lineage_must_be_the_runs_own(server: Server, name: str) -> None:
    from tests.server.conftest import evidence_bundle

    version, run_id = _version_from_run_with_lineage(server, name, "a" * 32)
    bundle = evidence_bundle(name, version, run_id)
    bundle["lineage"]["datasets"] = [{"path": "data/train.csv", "md5": "b" * 32, "rev": "c" * 40}]
    res = server.request(name, version, _record(server, name, version, bundle, run_id))
    assert res.status_code == 409
    assert res.json()["code"] == "evidence_mismatch"
    assert "claims training data" in res.json()["message"] and "a" * 32 in res.json()["message"]

    bundle["lineage"]["datasets"][0]["md5"] = "a" * 32
    res = server.request(name, version, _record(server, name, version, bundle, run_id))
    assert res.status_code == 201, res.json()


def test_evidence_must_name_the_versions_run(server: Server, name: str) -> None:
    from tests.server.conftest import evidence_bundle

    version, run_id = _version_from_run_with_lineage(server, name, "a" * 32)
    bundle = evidence_bundle(name, version, server.model.run_id)  # another run's evidence
    bundle["lineage"]["datasets"] = [{"path": "data/train.csv", "md5": "a" * 32, "rev": "c" * 40}]
    res = server.request(name, version, _record(server, name, version, bundle, run_id))
    assert res.status_code == 409
    assert f"comes from run {run_id!r}" in res.json()["message"]
