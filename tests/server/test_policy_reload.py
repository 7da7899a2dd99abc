"""The policy is reloaded without restart (file poll or admin call), refused when invalid,
kept by digest, recorded on every decision, and the same in every worker; on SQLite and
PostgreSQL with real MLflow."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.policy import parse_policy
from registry_server.app import reconcile_once
from registry_server.services.policies import poll
from tests.server.conftest import LADDER, MlflowModel, Server, make_server
from tests.server.test_ladder import to_staging

ONE_APPROVAL = LADDER.replace("approvals: {count: 2,", "approvals: {count: 1,")
BROKEN = LADDER.replace("for: 2s", "for: soon")


@pytest.fixture
def policy_path(tmp_path: Path) -> Path:
    path = tmp_path / "promotion-policy.yaml"
    path.write_text(LADDER)
    return path


@pytest.fixture
def srv(
    database_url: str, policy_path: Path, mlflow_model: MlflowModel, name: str
) -> Iterator[Server]:
    server = make_server(database_url, policy_path, mlflow_model, name)
    yield server
    server.close()


def _write(path: Path, text: str) -> None:
    """Rewrite the file with a new modification time (coarse file systems tick slowly)."""
    stamp = path.stat().st_mtime_ns + 1_000_000_000
    path.write_text(text)
    os.utime(path, ns=(stamp, stamp))


def _events(srv: Server, action: str) -> list[dict]:
    items = srv.client.get("/v1/audit?limit=1000", headers=srv.h("root")).json()["items"]
    return [e for e in items if e["action"] == action]


def test_reload_without_restart_records_the_digest_on_each_decision(
    srv: Server, policy_path: Path, name: str
) -> None:
    old, new = parse_policy(LADDER).digest, parse_policy(ONE_APPROVAL).digest
    version, digest = to_staging(srv, name)
    rid = srv.request(name, version, digest).json()["id"]
    srv.clock.advance(seconds=3)
    assert srv.client.get(f"/v1/promotions/{rid}").json()["quorum"]["need"] == 2

    _write(policy_path, ONE_APPROVAL)
    srv.clock.advance(seconds=1)
    assert poll(srv.ctx) == {"changed": True, "digest": new, "previous": old, "error": None}
    assert poll(srv.ctx)["changed"] is False  # the same file again: nothing to do

    done = srv.approve(rid, "ann").json()
    assert done["state"] == "promoted", done  # one approval is enough now, no restart
    assert done["policy_digest"] == old  # opened under the old policy
    assert done["approvals"][0]["policy_digest"] == new  # approved under the new one
    by_action = {
        e["action"]: e["payload"]["policy_digest"]
        for e in _events(srv, "requested") + _events(srv, "approval") + _events(srv, "promoted")
        if e["payload"].get("request_id") == rid
    }
    assert by_action == {"requested": old, "approval": new, "promoted": new}
    (loaded,) = [e for e in _events(srv, "policy_loaded") if e["payload"]["digest"] == new]
    assert loaded["actor"] == "system" and loaded["payload"]["previous"] == old


STRICTER = LADDER.replace(
    "suites: [iris_train], smoke_test", "suites: [iris_train, iris_strict], smoke_test"
)


def test_a_request_opened_under_a_looser_policy_takes_no_approval_under_a_stricter_one(
    srv: Server, policy_path: Path, name: str
) -> None:
    version, digest = to_staging(srv, name)
    rid = srv.request(name, version, digest).json()["id"]
    srv.clock.advance(seconds=3)
    _write(policy_path, STRICTER)
    assert srv.post("/v1/policy/reload", "root").json()["changed"] is True

    res = srv.approve(rid, "ann")

    assert res.status_code == 422, res.json()
    body = res.json()
    assert body["code"] == "policy_violation"
    assert "The policy changed since request" in body["message"]
    assert "iris_strict" in body["message"]
    assert f"POST /v1/promotions/{rid}/cancel" in body["hint"]
    view = srv.client.get(f"/v1/promotions/{rid}").json()
    assert view["state"] == "pending" and view["approvals"] == []

    _write(policy_path, LADDER)  # back to the policy it was opened under: approvals count
    assert srv.post("/v1/policy/reload", "root").json()["changed"] is True
    assert srv.approve(rid, "ann").status_code == 200


def _quorum_while_mlflow_is_down(srv: Server, name: str) -> int:
    """A production request that reached its quorum while MLflow refused the alias move:
    ``approved``, its move waiting in the outbox."""
    version, digest = to_staging(srv, name)
    rid = srv.request(name, version, digest).json()["id"]
    srv.clock.advance(seconds=3)  # soaked in staging
    assert srv.approve(rid, "ann").status_code == 200
    srv.ctx.gateway.fail_set_alias = 1  # MLflow down when the quorum is reached
    assert srv.approve(rid, "bob").json()["state"] == "approved"
    return rid


def test_a_move_waiting_for_mlflow_is_checked_under_the_policy_in_force_when_it_runs(
    srv: Server, policy_path: Path, name: str
) -> None:
    old, new = parse_policy(LADDER).digest, parse_policy(STRICTER).digest
    rid = _quorum_while_mlflow_is_down(srv, name)
    _write(policy_path, STRICTER)
    assert srv.post("/v1/policy/reload", "root").json()["changed"] is True
    srv.clock.advance(seconds=60)

    reconcile_once(srv.ctx)  # MLflow is back: the background pass takes the move up

    view = srv.client.get(f"/v1/promotions/{rid}").json()
    assert view["state"] == "cancelled", view
    assert "production" not in srv.model.client().get_registered_model(name).aliases
    mine = [e for e in _events(srv, "policy_violation") if e["payload"]["request_id"] == rid]
    (event,) = mine
    assert event["actor"] == "system" and event["payload"]["at_stage"] == "alias_move"
    reason = event["payload"]["reason"]
    assert "checks.suites.iris_strict: " in reason  # the rule that failed, and why
    assert f"({old[:12]} -> {new[:12]})" in reason
    assert (event["payload"]["opened_under"], event["payload"]["policy_digest"]) == (old, new)
    assert [r["rule"] for r in event["payload"]["rules"]] == ["checks.suites.iris_strict"]
    assert not [e for e in _events(srv, "promoted") if e["payload"]["request_id"] == rid]
    assert srv.client.get("/v1/audit/verify", headers=srv.h("root")).json()["ok"]


def test_a_move_waiting_for_mlflow_goes_through_under_a_new_policy_it_passes(
    srv: Server, policy_path: Path, name: str
) -> None:
    rid = _quorum_while_mlflow_is_down(srv, name)
    _write(policy_path, ONE_APPROVAL)
    assert srv.post("/v1/policy/reload", "root").json()["changed"] is True
    srv.clock.advance(seconds=60)

    reconcile_once(srv.ctx)

    assert srv.client.get(f"/v1/promotions/{rid}").json()["state"] == "promoted"
    assert "production" in srv.model.client().get_registered_model(name).aliases
    assert _events(srv, "policy_violation") == []


def test_an_invalid_file_is_refused_and_the_old_policy_stays(
    srv: Server, policy_path: Path
) -> None:
    old = srv.ctx.policy.digest
    _write(policy_path, BROKEN)

    res = srv.post("/v1/policy/reload", "root")

    assert res.status_code == 422, res.json()
    body = res.json()
    assert body["code"] == "policy_error"
    assert "targets.production.requires.for" in body["message"]
    assert f"policy {old[:12]} stays in force" in body["message"]
    assert "POST /v1/policy/reload" in body["hint"]
    assert srv.ctx.policy.digest == old
    assert poll(srv.ctx)["error"] is not None  # the loop sees it too, and keeps the old one
    assert srv.ctx.policy.digest == old
    rejected = _events(srv, "policy_rejected")
    assert len(rejected) == 1  # the admin call audits; the loop does not repeat it
    assert rejected[0]["payload"]["in_force"] == old
    assert "targets.production.requires.for" in rejected[0]["payload"]["error"]
    history = srv.client.get("/v1/policy/history", headers=srv.h("ann")).json()
    assert history["in_force"] == old and "requires.for" in history["file_error"]


def test_only_an_admin_reloads(srv: Server) -> None:
    res = srv.post("/v1/policy/reload", "ann")
    assert res.status_code == 403 and res.json()["code"] == "forbidden"
    assert srv.post("/v1/policy/reload", "root").json()["changed"] is False


def test_history_lists_every_policy_and_shows_each(srv: Server, policy_path: Path) -> None:
    old, new = parse_policy(LADDER).digest, parse_policy(ONE_APPROVAL).digest
    srv.clock.advance(seconds=5)
    _write(policy_path, ONE_APPROVAL)
    assert srv.post("/v1/policy/reload", "root").json()["digest"] == new

    history = srv.client.get("/v1/policy/history", headers=srv.h("rita")).json()
    assert [(i["digest"], i["in_force"], i["loaded_by"]) for i in history["items"]] == [
        (new, True, "root"),
        (old, False, "startup"),
    ]
    assert history["in_force"] == new and history["file_error"] is None
    kept = srv.client.get(f"/v1/policy/{old[:10]}", headers=srv.h("rita")).json()
    assert kept["source"] == LADDER and kept["digest"] == old
    assert kept["body"]["targets"]["production"]["requires"] == {"held": "staging", "for": 2.0}
    missing = srv.client.get("/v1/policy/00000000", headers=srv.h("rita"))
    assert missing.status_code == 404 and "GET /v1/policy/history" in missing.json()["hint"]
    assert srv.client.get("/v1/policy/history").status_code == 401


def test_workers_converge_on_one_policy(
    database_url: str, policy_path: Path, mlflow_model: MlflowModel, name: str
) -> None:
    one = make_server(database_url, policy_path, mlflow_model, name)
    two = make_server(database_url, policy_path, mlflow_model, name)
    two.tokens = one.tokens
    try:
        new = parse_policy(ONE_APPROVAL).digest
        _write(policy_path, ONE_APPROVAL)
        assert poll(one.ctx)["changed"] and poll(two.ctx)["changed"]
        assert one.ctx.policy.digest == two.ctx.policy.digest == new
        loaded = [e for e in _events(one, "policy_loaded") if e["payload"]["digest"] == new]
        assert len(loaded) == 1  # one event for the change, whichever worker saw it first
    finally:
        one.close()
        two.close()


def test_the_background_loop_picks_up_a_change(
    database_url: str, policy_path: Path, mlflow_model: MlflowModel, name: str
) -> None:
    srv = make_server(database_url, policy_path, mlflow_model, name, policy_poll_interval=0.05)
    new = parse_policy(ONE_APPROVAL).digest
    try:
        with srv.client:  # runs the lifespan, and with it the loops
            _write(policy_path, ONE_APPROVAL)
            deadline = time.monotonic() + 10
            while srv.ctx.policy.digest != new and time.monotonic() < deadline:
                time.sleep(0.05)
            assert srv.ctx.policy.digest == new
            assert srv.client.app.state.loops["policy"].report()["alive"] is True
    finally:
        srv.close()


def test_a_ladder_added_by_a_reload_holds_back_a_waiting_request(
    database_url: str, tmp_path: Path, mlflow_model: MlflowModel, name: str
) -> None:
    path = tmp_path / "promotion-policy.yaml"
    path.write_text(LADDER.replace("    requires: {held: staging, for: 2s}\n", ""))
    srv = make_server(database_url, path, mlflow_model, name)
    try:
        version = srv.model.register(name)
        rid = srv.request(name, version, srv.model.record(name, version)).json()["id"]
        _write(path, LADDER)
        assert poll(srv.ctx)["changed"]

        body = srv.client.get(f"/v1/promotions/{rid}").json()
        assert body["state"] == "pending" and body["soak"]["since"] is None
        assert body["blocked_by"][0] == "soak: does not hold 'staging'; promote it there first"
        res = srv.approve(rid, "ann")
        assert res.status_code == 409 and res.json()["code"] == "soak_pending", res.json()
        assert "does not hold 'staging'" in res.json()["message"]
    finally:
        srv.close()
