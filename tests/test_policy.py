"""Policy as code: schema errors name the key; verdicts name every failed rule and why."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlops.errors import PolicyError
from mlops.policy import (
    ApprovalRecord,
    Policy,
    Tally,
    Verdict,
    active_freeze,
    check,
    evaluate_approvals,
    load_policy,
    parse_policy,
)
from tests import _evidence

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(ROOT / "promotion-policy.yaml")


def evidence(
    *,
    accuracy: float | None = 0.95,
    champion: float | None = None,
    suite: str = "iris_train",
    suite_ok: bool = True,
    smoke: bool | None = True,
) -> dict:
    """The shared test bundle for iris v2; ``accuracy=None`` leaves the metric out and
    ``smoke=None`` the package section."""
    ev = _evidence.bundle(
        "iris",
        2,
        "r",
        accuracy=0.0 if accuracy is None else accuracy,
        champion=None if champion is None else {"accuracy": champion},
        suite=suite,
        suite_ok=suite_ok,
        smoke_ok=bool(smoke),
        package=smoke is not None,
    )
    if accuracy is None:
        del ev["evaluation"]["metrics"]["candidate"]["accuracy"]
    return ev


# --- parsing ------------------------------------------------------------------------------
def test_example_policy_loads(policy: Policy) -> None:
    prod = policy.targets["production"]
    assert prod.protected is True
    assert prod.checks.suites == ("iris_train",)
    assert prod.checks.metrics["accuracy"].threshold == 0.8
    assert prod.approvals.count == 2
    assert prod.approvals.roles == ("approver", "admin")
    assert prod.approvals.ttl == timedelta(hours=72)
    assert prod.freeze_windows[0].reason == "holidays"
    assert policy.targets["staging"].protected is False
    assert policy.targets["staging"].approvals.count == 1


def test_load_policy_defaults_to_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_POLICY_PATH", str(ROOT / "promotion-policy.yaml"))
    assert load_policy().digest == load_policy(ROOT / "promotion-policy.yaml").digest


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"Cannot read the policy file .*nope\.yaml"):
        load_policy(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("targets: {p: {approvals: {count: -1}}}", r"targets\.p\.approvals\.count"),
        ("targets: {p: {approvals: {count: two}}}", r"targets\.p\.approvals\.count"),
        ("targets: {p: {approvals: {count: 1, roles: []}}}", r"targets\.p\.approvals\.roles"),
        ("targets: {p: {checks: {metrics: {acc: {}}}}}", r"targets\.p\.checks\.metrics\.acc"),
        ("targets: {p: {approvals: {ttl: 3 fortnights}}}", r"targets\.p\.approvals\.ttl"),
        ("targets: {p: {approvals: {ttl: 0h}}}", r"targets\.p\.approvals\.ttl"),
        ("targets: {p: {colour: blue}}", r"targets\.p\.colour: Extra inputs"),
        ("targets: {p: {checks: {smoke_test: maybe}}}", r"targets\.p\.checks\.smoke_test"),
        ("version: 2\ntargets: {}", r"version"),
        (
            "targets: {p: {freeze_windows: [{start: 2026-01-02, end: 2026-01-01}]}}",
            r"targets\.p\.freeze_windows\.0\.end: must be after start",
        ),
        (
            "targets: {p: {checks: {metrics: {acc: {min_relative_change: 2}}}}}",
            r"targets\.p\.checks\.metrics\.acc\.min_relative_change",
        ),
    ],
)
def test_bad_policy_names_the_key(text: str, key: str) -> None:
    with pytest.raises(PolicyError, match=key) as info:
        parse_policy("version: 1\n" + text if not text.startswith("version") else text)
    assert info.value.hint.startswith("Fix targets") or "version" in info.value.hint


def test_not_yaml_and_not_a_mapping() -> None:
    with pytest.raises(PolicyError, match="not valid YAML"):
        parse_policy("targets: [unclosed")
    with pytest.raises(PolicyError, match="must be a mapping, got list"):
        parse_policy("- a\n- b")


def test_digest_is_stable_and_changes_with_content(policy: Policy) -> None:
    again = parse_policy((ROOT / "promotion-policy.yaml").read_text())
    assert policy.digest == again.digest and len(policy.digest) == 64
    changed = policy.to_dict()
    changed["targets"]["staging"]["approvals"]["count"] = 3
    changed["targets"]["staging"]["approvals"]["ttl"] = None
    changed["targets"]["production"]["approvals"]["ttl"] = 259200
    assert parse_policy(changed).digest != policy.digest


def test_ttl_formats() -> None:
    text = "version: 1\ntargets: {p: {approvals: {ttl: 1d12h}}, q: {approvals: {ttl: 90}}}"
    p = parse_policy(text)
    assert p.targets["p"].approvals.ttl == timedelta(hours=36)
    assert p.targets["q"].approvals.ttl == timedelta(seconds=90)


# --- check ---------------------------------------------------------------------------------
def test_passing_evidence(policy: Policy) -> None:
    verdict = check(evidence(champion=0.9), policy, "production")
    assert verdict.passed is True
    assert [r.rule for r in verdict.rules] == [
        "target.known",
        "checks.suites.iris_train",
        "checks.metrics.accuracy",
        "checks.must_beat_champion",
        "checks.smoke_test",
    ]
    assert verdict.failures == ()


def test_unknown_target(policy: Policy) -> None:
    verdict = check(evidence(), policy, "moon")
    assert not verdict.passed
    assert verdict.failures[0].rule == "target.known"
    assert "production, staging" in verdict.failures[0].reason


def test_every_failed_rule_says_why(policy: Policy) -> None:
    bad = evidence(accuracy=0.7, champion=0.9, suite_ok=False, smoke=False)
    verdict = check(bad, policy, "production")
    reasons = {r.rule: r.reason for r in verdict.failures}
    assert set(reasons) == {
        "checks.suites.iris_train",
        "checks.metrics.accuracy",
        "checks.must_beat_champion",
        "checks.smoke_test",
    }
    assert "1 expectation(s) unsuccessful" in reasons["checks.suites.iris_train"]
    assert "0.7 is not >= threshold 0.8" in reasons["checks.metrics.accuracy"]
    assert "absolute change below 0" in reasons["checks.metrics.accuracy"]
    assert "worse than champion 0.9" in reasons["checks.must_beat_champion"]
    assert "smoke test failed" in reasons["checks.smoke_test"]


def test_missing_sections(policy: Policy) -> None:
    ev = evidence(suite="other", smoke=None)
    ev["evaluation"] = None
    reasons = {r.rule: r.reason for r in check(ev, policy, "production").failures}
    assert (
        reasons["checks.suites.iris_train"] == "no validation of suite 'iris_train' in the evidence"
    )
    assert reasons["checks.metrics.accuracy"] == "no evaluation in the evidence"
    assert reasons["checks.smoke_test"] == "no package smoke test in the evidence"


def test_metric_missing_from_candidate(policy: Policy) -> None:
    failures = check(evidence(accuracy=None), policy, "production").failures
    assert failures[0].reason == "metric 'accuracy' missing from the candidate's metrics"


def test_no_champion_passes_must_beat(policy: Policy) -> None:
    rules = {r.rule: r for r in check(evidence(), policy, "production").rules}
    assert rules["checks.must_beat_champion"].passed
    assert rules["checks.must_beat_champion"].reason == "no champion holds the alias yet"


def test_metrics_are_recomputed_not_trusted(policy: Policy) -> None:
    ev = evidence(accuracy=0.5)
    ev["evaluation"]["passed"] = True  # the evaluation's own verdicts are ignored
    assert not check(ev, policy, "production").passed


@pytest.mark.parametrize(
    ("rule", "cand", "champ", "ok"),
    [
        ({"threshold": 0.3, "greater_is_better": False}, 0.2, None, True),
        ({"threshold": 0.3, "greater_is_better": False}, 0.4, None, False),
        ({"min_absolute_change": 0.05, "greater_is_better": True}, 0.9, 0.86, False),
        ({"min_absolute_change": 0.05, "greater_is_better": True}, 0.91, 0.86, True),
        (
            {"min_absolute_change": 0.05, "greater_is_better": True},
            0.5,
            None,
            True,
        ),  # no champion: change rules skip
        ({"min_relative_change": 0.1, "greater_is_better": True}, 1.05, 1.0, False),
        ({"min_relative_change": 0.1, "greater_is_better": True}, 1.1, 1.0, True),
        ({"min_relative_change": 0.1, "greater_is_better": False}, 0.9, 1.0, True),
        ({"min_relative_change": 0.1, "greater_is_better": False}, 0.95, 1.0, False),
    ],
)
def test_metric_threshold_semantics(rule: dict, cand: float, champ: float | None, ok: bool) -> None:
    p = parse_policy({"version": 1, "targets": {"t": {"checks": {"metrics": {"m": rule}}}}})
    champion = {"m": champ} if champ is not None else None
    ev = {"evaluation": {"metrics": {"candidate": {"m": cand}, "champion": champion}}}
    assert check(ev, p, "t").passed is ok


def test_freeze_rule_with_now(policy: Policy) -> None:
    frozen = datetime(2026, 12, 25, tzinfo=UTC)
    rules = {r.rule: r for r in check(evidence(), policy, "production", now=frozen).rules}
    assert not rules["freeze"].passed and "holidays" in rules["freeze"].reason
    assert check(evidence(), policy, "production", now=NOW).passed
    assert active_freeze(policy.targets["production"], frozen).reason == "holidays"
    assert active_freeze(policy.targets["production"], datetime(2026, 12, 27, tzinfo=UTC)) is None


def test_evidence_object_with_to_dict(policy: Policy) -> None:
    class Bundle:
        def to_dict(self) -> dict:
            return evidence()

    assert check(Bundle(), policy, "production").passed
    with pytest.raises(PolicyError, match="must be a mapping or have to_dict"):
        check(42, policy, "production")


def test_verdict_renders(policy: Policy) -> None:
    verdict = check(evidence(smoke=False), policy, "production")
    assert isinstance(verdict, Verdict)
    text = str(verdict)
    assert text.startswith("production: blocked")
    assert "[FAIL] checks.smoke_test" in text
    html = verdict._repr_html_()
    assert "<table>" in html and "checks.smoke_test" in html
    data = verdict.to_dict()
    assert data["passed"] is False and data["target"] == "production"
    assert {"rule", "passed", "reason"} == set(data["rules"][0])


# --- approvals ------------------------------------------------------------------------------
def _appr(user: str, roles=("approver",), decision="approve", digest="d", hours_ago=1.0):
    return ApprovalRecord(user, tuple(roles), decision, digest, NOW - timedelta(hours=hours_ago))


def test_quorum_of_two_distinct_approvers(policy: Policy) -> None:
    tp = policy.targets["production"]
    tally = evaluate_approvals(
        tp, [_appr("ann"), _appr("bob")], requester="rita", digest="d", now=NOW
    )
    assert (tally.have, tally.need, tally.quorum) == (2, 2, True)
    assert tally.counted == ("ann", "bob")


def test_every_ignored_approval_says_why(policy: Policy) -> None:
    tp = policy.targets["production"]
    approvals = [
        _appr("rita", roles=("approver",)),
        _appr("ann", hours_ago=3),
        _appr("ann", hours_ago=2),
        _appr("carl", roles=("requester",)),
        _appr("dora", digest="old"),
        _appr("eve", hours_ago=80),
        _appr("fred", decision="reject"),
    ]
    tally = evaluate_approvals(tp, approvals, requester="rita", digest="d", now=NOW)
    assert (tally.have, tally.quorum) == (1, False)
    reasons = dict(tally.ignored)
    assert reasons["rita"] == "the requester may not approve their own request"
    assert reasons["ann"] == "already counted once for this person"
    assert "hold none of ['approver', 'admin']" in reasons["carl"]
    assert reasons["dora"].startswith("approved evidence old")
    assert reasons["eve"].startswith("older than the approval ttl")
    assert reasons["fred"] == "decision was 'reject'"
    assert tally.why_not("ann") == "already counted once for this person"
    assert tally.why_not("nobody") is None


def test_rules_that_can_be_switched_off() -> None:
    p = parse_policy(
        {
            "version": 1,
            "targets": {
                "t": {"approvals": {"count": 2, "exclude_requester": False, "distinct": False}}
            },
        }
    )
    tally = evaluate_approvals(
        p.targets["t"], [_appr("rita"), _appr("rita")], requester="rita", digest="d", now=NOW
    )
    assert tally.quorum and tally.counted == ("rita", "rita")


def test_zero_approvals_is_an_immediate_quorum() -> None:
    p = parse_policy({"version": 1, "targets": {"t": {}}})
    tally = evaluate_approvals(p.targets["t"], [], requester="x", digest="d", now=NOW)
    assert tally == Tally(have=0, need=0, quorum=True)


def test_tally_renders() -> None:
    tally = Tally(1, 2, False, ("ann",), (("bob", "wrong role"),))
    assert str(tally) == "1/2 approvals\n  counted: ann\n  ignored: bob: wrong role"
    assert "wrong role" in tally._repr_html_()
    assert tally.to_dict() == {
        "have": 1,
        "need": 2,
        "quorum": False,
        "counted": ["ann"],
        "ignored": [{"user": "bob", "reason": "wrong role"}],
    }


def test_policy_module_has_no_web_imports() -> None:
    code = (
        "import sys, mlops.policy; "
        "bad = [m for m in ('fastapi', 'sqlalchemy', 'mlflow', 'starlette') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
