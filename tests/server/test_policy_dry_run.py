"""``POST /v1/policy/dry-run``: a new policy judged against the pending requests and the
protected holders before it is deployed, rule by rule (SQLite and PostgreSQL, real MLflow)."""

from __future__ import annotations

from mlops.policy import parse_policy
from tests.server.conftest import LADDER, Server
from tests.server.test_ladder import to_staging


def _new_policy(held: str, waiting: str) -> str:
    """``held``'s production needs accuracy >= 0.99; ``waiting``'s needs one approval."""
    return LADDER + (
        "models:\n"
        f"  {held}:\n"
        "    targets:\n"
        "      production:\n"
        "        checks:\n"
        "          metrics: {accuracy: {threshold: 0.99}}\n"
        f"  {waiting}:\n"
        "    targets:\n"
        "      production:\n"
        "        approvals: {count: 1}\n"
    )


def _rules(item: dict) -> dict[str, tuple]:
    def short(result: dict | None) -> tuple | None:
        return None if result is None else (result["passed"], result["reason"])

    return {r["rule"]: (short(r["old"]), short(r["new"]), r["changed"]) for r in item["rules"]}


def test_dry_run_shows_what_a_new_policy_blocks_and_unblocks(ladder: Server, name: str) -> None:
    held, waiting = f"{name}-held", f"{name}-waiting"
    v_held, digest = to_staging(ladder, held)
    rid = ladder.request(held, v_held, digest).json()["id"]
    ladder.clock.advance(seconds=3)
    ladder.approve(rid, "ann")
    assert ladder.approve(rid, "bob").json()["state"] == "promoted"
    v_wait, digest = to_staging(ladder, waiting)
    wid = ladder.request(waiting, v_wait, digest).json()["id"]
    ladder.clock.advance(seconds=3)
    ladder.approve(wid, "ann")  # 1 of 2 now
    source = _new_policy(held, waiting)

    res = ladder.post("/v1/policy/dry-run", "ann", {"policy": source})

    assert res.status_code == 200, res.json()
    out = res.json()
    assert out["old_digest"] == ladder.ctx.policy.digest
    assert out["new_digest"] == parse_policy(source).digest
    assert out["summary"] == {"blocks": 0, "unblocks": 1, "holders_failing": 1}
    (request,) = [r for r in out["requests"] if r["id"] == wid]
    assert (request["old_passed"], request["new_passed"], request["change"]) == (
        False,
        True,
        "unblocks",
    )
    assert _rules(request) == {
        "target.known": ((True, "production is known"),) * 2 + (False,),
        "checks.suites.iris_train": ((True, "suite 'iris_train' passed"),) * 2 + (False,),
        "checks.smoke_test": ((True, "smoke test passed on 3 row(s)"),) * 2 + (False,),
        "freeze": ((True, "open"),) * 2 + (False,),
        "requires.held": ((True, "held staging for 3s (needs 2s)"),) * 2 + (False,),
        "approvals.count": ((False, "1 of 2 counted"), (True, "1 of 1 counted"), True),
    }
    (holder,) = [h for h in out["holders"] if h["model"] == held]
    assert (holder["alias"], holder["version"], holder["change"]) == (
        "production",
        v_held,
        "blocks",
    )
    assert _rules(holder)["checks.metrics.accuracy"] == (
        None,
        (False, "accuracy: 0.95 is not >= threshold 0.99"),
        True,
    )
    assert all(
        not changed
        for rule, (_, _, changed) in _rules(holder).items()
        if rule != "checks.metrics.accuracy"
    )
    assert [h["model"] for h in out["holders"] if h["model"].startswith(name)] == [held]
    assert ladder.ctx.policy.digest == out["old_digest"]  # nothing was put in force


def test_dry_run_refuses_a_bad_policy_and_a_requester(ladder: Server) -> None:
    bad = ladder.post(
        "/v1/policy/dry-run", "root", {"policy": "targets: {p: {approvals: {count: -1}}}"}
    )
    assert bad.status_code == 422, bad.json()
    assert bad.json()["code"] == "policy_error"
    assert "targets.p.approvals.count" in bad.json()["message"]
    denied = ladder.post("/v1/policy/dry-run", "rita", {"policy": LADDER})
    assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
