"""Never lose an alias move, never move it twice; audit tampering; tokens; expiry; drift."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from registry_server.app import create_app, reconcile_once
from registry_server.services import promotions
from registry_server.services.context import Caller
from tests.server.conftest import Server


def _request(server: Server, name: str, target: str = "production") -> tuple[int, int]:
    version = server.model.register(name)
    digest = server.model.record(name, version)
    res = server.request(name, version, digest, target=target)
    assert res.status_code == 201, res.json()
    return res.json()["id"], version


def _promoted_events(server: Server, name: str) -> list[dict]:
    items = server.client.get("/v1/audit?limit=1000", headers=server.h("root")).json()["items"]
    return [e for e in items if e["action"] == "promoted" and e["payload"]["model"] == name]


def test_mlflow_outage_leaves_request_approved_then_retry_promotes(
    server: Server, name: str
) -> None:
    rid, version = _request(server, name)
    server.approve(rid, "ann")
    server.ctx.gateway.fail_set_alias = 2
    body = server.approve(rid, "bob").json()
    assert body["state"] == "approved"
    assert any("alias move pending" in b and "outage" in b for b in body["blocked_by"])
    assert server.model.client().get_registered_model(name).aliases == {}

    # the background pass respects the back-off: not due yet, still failing once more
    assert reconcile_once(server.ctx)["applied"] == 0
    server.clock.advance(seconds=5)
    assert reconcile_once(server.ctx)["applied"] == 0  # second outage attempt
    server.clock.advance(seconds=10)
    assert reconcile_once(server.ctx)["applied"] == 1
    assert reconcile_once(server.ctx)["applied"] == 0  # nothing left: exactly once

    assert server.client.get(f"/v1/promotions/{rid}").json()["state"] == "promoted"
    mv = server.model.client().get_model_version_by_alias(name, "production")
    assert int(mv.version) == version
    assert len(_promoted_events(server, name)) == 1


class TestRetryBackoffSetting:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"retry_backoff": 30.0, "retry_backoff_max": 45.0}  # MLOPS_REGISTRY_RETRY_*

    def test_they_set_the_first_wait_before_a_move_is_retried_and_the_longest(
        self, server: Server, name: str
    ) -> None:
        rid, _ = _request(server, name)
        server.approve(rid, "ann")
        server.ctx.gateway.fail_set_alias = 2
        assert server.approve(rid, "bob").json()["state"] == "approved"  # attempt 1 failed
        # waits: 30 s, then 60 s capped at 45 s
        for wait, tried in ((29, False), (2, True), (43, False), (2, True)):
            server.clock.advance(seconds=wait)
            left = server.ctx.gateway.fail_set_alias
            applied = reconcile_once(server.ctx)["applied"]
            assert (left != server.ctx.gateway.fail_set_alias or applied == 1) is tried, wait
        assert server.client.get(f"/v1/promotions/{rid}").json()["state"] == "promoted"


def test_concurrent_approvals_promote_once(server: Server, name: str) -> None:
    rid, _ = _request(server, name, target="staging")
    results: list[object] = []
    barrier = threading.Barrier(3)

    def approve(user: str) -> None:
        barrier.wait()
        try:
            results.append(promotions.approve(server.ctx, Caller(user, ("approver",)), rid))
        except Exception as exc:  # collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=approve, args=(u,)) for u in ("ann", "bob", "eve")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    states = sorted(r["state"] for r in results if isinstance(r, dict))
    errors = [r for r in results if not isinstance(r, dict)]
    assert states == ["promoted"], (states, errors)
    assert len(errors) == 2 and all("not pending" in str(e) for e in errors)
    assert len(_promoted_events(server, name)) == 1
    history = server.client.get(f"/v1/aliases/{name}/staging/history").json()["items"]
    assert len(history) == 1


def test_audit_chain_names_the_tampered_event(server: Server, name: str) -> None:
    rid, _ = _request(server, name)
    server.approve(rid, "ann")
    events = server.client.get("/v1/audit", headers=server.h("root")).json()["items"]
    target = next(e for e in events if e["action"] == "approval")
    with server.ctx.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET actor = 'mallory' WHERE id = :i"), {"i": target["id"]}
        )
    verify = server.client.get("/v1/audit/verify", headers=server.h("root")).json()
    assert verify["ok"] is False
    assert verify["first_bad_id"] == target["id"]
    assert "hash does not match" in verify["reason"]


def test_audit_chain_detects_a_deleted_event(server: Server, name: str) -> None:
    rid, _ = _request(server, name)
    server.approve(rid, "ann")
    server.approve(rid, "bob")
    events = server.client.get("/v1/audit", headers=server.h("root")).json()["items"]
    gone, after = events[1], events[2]
    with server.ctx.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE id = :i"), {"i": gone["id"]})
    verify = server.client.get("/v1/audit/verify", headers=server.h("root")).json()
    assert verify["ok"] is False and verify["first_bad_id"] == after["id"]
    assert "prev_hash" in verify["reason"]


def test_tokens_admin_only_and_revocation(server: Server) -> None:
    res = server.post("/v1/tokens", "ann", {"user": "zoe", "roles": ["approver"]})
    assert res.status_code == 403 and "not an admin" in res.json()["message"]
    issued = server.post("/v1/tokens", "root", {"user": "zoe", "roles": ["approver"]})
    assert issued.status_code == 201
    token = issued.json()["token"]
    zoe = {"Authorization": f"Bearer {token}"}
    assert server.client.get("/v1/me", headers=zoe).json() == {"user": "zoe", "roles": ["approver"]}
    listed = server.client.get("/v1/tokens", headers=server.h("root")).json()["items"]
    assert token not in str(listed)
    assert any(t["user"] == "zoe" and not t["revoked"] for t in listed)
    res = server.client.delete(f"/v1/tokens/{issued.json()['id']}", headers=server.h("root"))
    assert res.status_code == 204
    res = server.client.get("/v1/me", headers=zoe)
    assert res.status_code == 401 and res.json()["code"] == "unauthenticated"
    res = server.client.delete("/v1/tokens/nope", headers=server.h("root"))
    assert res.status_code == 404 and "No token with id 'nope'" in res.json()["message"]


def test_request_ttl_expires_pending_requests(server: Server, name: str) -> None:
    rid, _ = _request(server, name, target="staging")
    server.clock.advance(hours=25)
    assert reconcile_once(server.ctx)["expired"] == 1
    res = server.approve(rid, "ann")
    assert res.status_code == 409 and "expired, not pending" in res.json()["message"]


def test_alias_moved_behind_the_servers_back_is_restored(server: Server, name: str) -> None:
    rid, version = _request(server, name)
    server.approve(rid, "ann")
    server.approve(rid, "bob")
    other = server.model.register(name)
    server.model.client().set_registered_model_alias(name, "production", str(other))
    assert reconcile_once(server.ctx)["restored"] == 1
    mv = server.model.client().get_model_version_by_alias(name, "production")
    assert int(mv.version) == version
    items = server.client.get("/v1/audit?limit=1000", headers=server.h("root")).json()["items"]
    restored = [e for e in items if e["action"] == "alias_drift_restored"]
    payload = restored[-1]["payload"]
    assert payload["model"] == name and payload["alias"] == "production"
    assert payload["found_version"] == other and payload["restored_version"] == version
    assert payload["seen"]["version"] == other and payload["seen"]["run_id"]
    assert payload["where"] == server.model.tracking_uri


def test_restart_finishes_a_pending_alias_move(server: Server, name: str) -> None:
    """A process that dies after the quorum (intent recorded, MLflow not called) loses
    nothing: a new app on the same database completes the move exactly once."""
    rid, version = _request(server, name)
    server.approve(rid, "ann")
    server.ctx.gateway.fail_set_alias = 1
    assert server.approve(rid, "bob").json()["state"] == "approved"

    settings = server.client.app.state.settings
    restarted = create_app(settings, clock=server.clock)
    try:
        server.clock.advance(minutes=1)
        assert reconcile_once(restarted.state.ctx)["applied"] == 1
        assert reconcile_once(restarted.state.ctx)["applied"] == 0
    finally:
        restarted.state.ctx.db.dispose()
    assert server.client.get(f"/v1/promotions/{rid}").json()["state"] == "promoted"
    mv = server.model.client().get_model_version_by_alias(name, "production")
    assert int(mv.version) == version
    assert len(_promoted_events(server, name)) == 1


def test_background_reconciler_finishes_the_move(server: Server, name: str) -> None:
    rid, version = _request(server, name)
    server.approve(rid, "ann")
    server.ctx.gateway.fail_set_alias = 1
    assert server.approve(rid, "bob").json()["state"] == "approved"

    settings = server.client.app.state.settings.model_copy(update={"reconcile_interval": 0.1})
    app = create_app(settings, clock=server.clock)
    server.clock.advance(seconds=5)  # past the back-off of the failed attempt
    state = "approved"
    with TestClient(app) as client:  # runs the lifespan, and with it the reconciler
        deadline = time.monotonic() + 30
        while state != "promoted" and time.monotonic() < deadline:
            time.sleep(0.1)
            state = client.get(f"/v1/promotions/{rid}").json()["state"]
    assert state == "promoted"
    mv = server.model.client().get_model_version_by_alias(name, "production")
    assert int(mv.version) == version
    assert len(_promoted_events(server, name)) == 1
