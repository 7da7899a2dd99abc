"""Policies scoped by model, metric directions, and tie semantics (issue #11: a regressor
judged by the classifier's suite, ``rmse`` read as higher-is-better, a tie beating the
champion)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlops.errors import PolicyError
from mlops.policy import check, load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[1]

TEAM = """
version: 1
targets:
  production:
    protected: true
    checks:
      suites: [wine_train]
      metrics:
        accuracy: {threshold: 0.8}
      must_beat_champion: true
      smoke_test: true
    approvals: {count: 2, roles: [approver, admin], ttl: 72h}
models:
  "diabetes-*":
    targets:
      production:
        checks:
          suites: [diabetes_train]
          metrics:
            rmse: {threshold: 70}
        approvals: {count: 1}
  diabetes-ridge:
    targets:
      production:
        approvals: {ttl: 24h}
  "*-shadow":
    targets:
      shadow: {checks: {smoke_test: true}}
"""


def _evidence(model: str, metrics: dict, champion: dict | None = None, suite: str = "") -> dict:
    return {
        "model": {"name": model, "version": 2, "run_id": "r"},
        "validation": [{"suite": suite, "success": True, "statistics": {}}] if suite else [],
        "evaluation": {"metrics": {"candidate": metrics, "champion": champion}},
        "package": {"smoke": {"passed": True, "rows": 5}},
    }


@pytest.fixture(scope="module")
def team():
    return parse_policy(TEAM)


def test_each_model_is_judged_by_its_own_suites_and_metrics(team) -> None:
    clf = check(_evidence("wine-rf", {"accuracy": 0.9}, suite="wine_train"), team, "production")
    reg = check(
        _evidence("diabetes-lasso", {"rmse": 55.0}, suite="diabetes_train"), team, "production"
    )
    assert clf.passed, str(clf)
    assert reg.passed, str(reg)
    assert [r.rule for r in reg.rules] == [
        "target.known",
        "checks.suites.diabetes_train",
        "checks.metrics.rmse",
        "checks.must_beat_champion",
        "checks.smoke_test",
    ]
    # the classifier's suite is not applied to the regressor, and the reverse
    wrong = check(
        _evidence("diabetes-lasso", {"rmse": 55.0}, suite="wine_train"), team, "production"
    )
    assert [r.rule for r in wrong.failures] == ["checks.suites.diabetes_train"]


def test_rmse_threshold_is_lower_is_better(team) -> None:
    over = check(
        _evidence("diabetes-x", {"rmse": 75.0}, suite="diabetes_train"), team, "production"
    )
    assert [r.reason for r in over.failures] == ["rmse: 75 is not <= threshold 70"]
    assert team.rules("diabetes-x", "production").checks.metrics["rmse"].greater_is_better is False


def test_most_specific_scope_wins_field_by_field(team) -> None:
    ridge = team.rules("diabetes-ridge", "production")
    assert ridge.approvals.count == 1  # from the glob
    assert ridge.approvals.ttl.total_seconds() == 24 * 3600  # from the exact name
    assert ridge.approvals.roles == ("approver", "admin")  # from the defaults
    assert ridge.protected is True
    where = team.explain("diabetes-ridge", "production")
    assert where["approvals.ttl"] == "models.diabetes-ridge.targets.production.approvals.ttl"
    assert where["approvals.count"] == "models.diabetes-*.targets.production.approvals.count"
    assert where["approvals.roles"] == "targets.production.approvals.roles"
    assert where["checks.metrics"] == "models.diabetes-*.targets.production.checks.metrics"
    assert team.rules("wine-rf", "production").approvals.count == 2


def test_a_target_only_some_models_have(team) -> None:
    assert team.rules("wine-shadow", "shadow").checks.smoke_test is True
    assert team.rules("wine-rf", "shadow") is None
    verdict = check(_evidence("wine-rf", {}), team, "shadow")
    assert [r.reason for r in verdict.failures] == [
        "target 'shadow' is not in the policy (known: production)"
    ]
    with pytest.raises(PolicyError, match=r"Target 'shadow' is not in the policy for model 'x'"):
        team.target("shadow", "x")


def test_the_existing_policy_file_keeps_its_rules_and_digest() -> None:
    policy = load_policy(ROOT / "promotion-policy.yaml")
    assert policy.models == {}
    assert policy.rules("any-model", "production") == policy.targets["production"]
    assert "models" not in policy.to_dict()
    assert "must_not_regress" not in policy.to_dict()["targets"]["production"]["checks"]
    # the shipped file has the server re-derive production's evidence; without that line
    # it is the file it was before scopes existed, with the same digest (audit events
    # record it): a feature a policy does not use leaves its digest alone
    assert policy.targets["production"].verify == ("validation", "evaluation")
    text = (ROOT / "promotion-policy.yaml").read_text()
    assert "    verify: [validation, evaluation]\n" in text
    before = parse_policy(
        yaml.safe_load(text.replace("    verify: [validation, evaluation]\n", ""))
    )
    assert before.digest == "9ba838b24921cb40ab1dce79baec78357be5360a78f530fc7691e0d11a97b1e2"


# --- metric directions --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("metric", "up"),
    [
        ("rmse", False),
        ("mae", False),
        ("mse", False),
        ("log_loss", False),
        ("accuracy", True),
        ("f1", True),
        ("r2", True),
        ("roc_auc", True),
    ],
)
def test_known_metrics_carry_their_direction(metric: str, up: bool) -> None:
    p = parse_policy({"targets": {"t": {"checks": {"metrics": {metric: {"threshold": 1}}}}}})
    assert p.targets["t"].checks.metrics[metric].greater_is_better is up


def test_unknown_direction_is_a_policy_error_naming_the_key_path() -> None:
    with pytest.raises(
        PolicyError,
        match=r"models\.m\.targets\.t\.checks\.metrics\.lift\.greater_is_better: the direction "
        r"of 'lift' is not known.*Hint: Fix models\.m\.targets\.t\.checks\.metrics\.lift"
        r"\.greater_is_better in promotion-policy\.yaml",
    ):
        parse_policy(
            {
                "models": {
                    "m": {"targets": {"t": {"checks": {"metrics": {"lift": {"threshold": 1}}}}}}
                }
            }
        )
    ok = parse_policy(
        {
            "targets": {
                "t": {"checks": {"metrics": {"lift": {"threshold": 1, "greater_is_better": True}}}}
            }
        }
    )
    assert ok.targets["t"].checks.metrics["lift"].greater_is_better is True


def test_a_contradicted_direction_says_so_in_policy_terms() -> None:
    with pytest.raises(
        PolicyError,
        match=r"targets\.t\.checks\.metrics\.rmse\.greater_is_better: lower rmse is better: "
        r"remove greater_is_better or set it to false",
    ):
        parse_policy(
            {
                "targets": {
                    "t": {
                        "checks": {
                            "metrics": {"rmse": {"threshold": 70, "greater_is_better": True}}
                        }
                    }
                }
            }
        )


# --- ties -----------------------------------------------------------------------------------
def _tie_policy(rule: str, change: float = 0.0) -> object:
    checks = {
        rule: True,
        "metrics": {"accuracy": {"threshold": 0.5, "min_absolute_change": change}},
    }
    return parse_policy({"targets": {"p": {"checks": checks}}})


def test_a_tie_does_not_beat_the_champion() -> None:
    """min_absolute_change 0.0, equal accuracy, f1 worse: used to pass must_beat_champion."""
    cand, champ = {"accuracy": 0.9, "f1_macro": 0.80}, {"accuracy": 0.9, "f1_macro": 0.85}
    verdict = check(_evidence("m", cand, champ), _tie_policy("must_beat_champion"), "p")
    beat = {r.rule: r for r in verdict.rules}["checks.must_beat_champion"]
    assert not beat.passed
    assert beat.reason == (
        "accuracy 0.9 ties champion 0.9 (a tie does not beat it) "
        "(must_beat_champion: strictly better by at least the minimum change)"
    )
    better = check(
        _evidence("m", {"accuracy": 0.91}, {"accuracy": 0.9}),
        _tie_policy("must_beat_champion"),
        "p",
    )
    assert better.passed
    short = check(
        _evidence("m", {"accuracy": 0.91}, {"accuracy": 0.9}),
        _tie_policy("must_beat_champion", 0.05),
        "p",
    )
    assert "less than 0.05" in {r.rule: r for r in short.rules}["checks.must_beat_champion"].reason


def test_must_not_regress_lets_a_tie_pass_but_no_metric_get_worse() -> None:
    policy = _tie_policy("must_not_regress")
    tie = check(_evidence("m", {"accuracy": 0.9}, {"accuracy": 0.9}), policy, "p")
    rule = {r.rule: r for r in tie.rules}["checks.must_not_regress"]
    assert rule.passed and rule.reason.endswith(
        "(must_not_regress: no worse than the champion; a tie passes)"
    )
    worse = check(
        _evidence("m", {"accuracy": 0.9, "f1_macro": 0.8}, {"accuracy": 0.9, "f1_macro": 0.85}),
        policy,
        "p",
    )
    assert [r.reason for r in worse.failures] == [
        "f1_macro 0.8 is worse than champion 0.85 "
        "(must_not_regress: no worse than the champion; a tie passes)"
    ]
    assert "must_not_regress" in str(worse) and "must_not_regress" in worse._repr_html_()


# --- mlops policy show ----------------------------------------------------------------------
def test_policy_show_prints_the_resolved_rules_and_where_each_came_from(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlops.cli import app

    path = tmp_path / "promotion-policy.yaml"
    path.write_text(TEAM)
    runner = CliRunner()
    res = runner.invoke(
        app, ["policy", "show", "diabetes-ridge", "production", "--policy", str(path)]
    )
    assert res.exit_code == 0, res.output
    lines = {line.split()[0]: line for line in res.output.splitlines()[1:]}
    assert lines["checks.suites"].endswith(
        '["diabetes_train"]  <- models.diabetes-*.targets.production.checks.suites'
    )
    assert '{"rmse": {"threshold": 70.0, "greater_is_better": false}}' in lines["checks.metrics"]
    assert lines["approvals.ttl"].endswith(
        '"24h"  <- models.diabetes-ridge.targets.production.approvals.ttl'
    )
    assert lines["approvals.roles"].endswith("<- targets.production.approvals.roles")
    assert lines["checks.must_not_regress"].endswith("false  <- default")

    unknown = runner.invoke(app, ["policy", "show", "wine-rf", "shadow", "--policy", str(path)])
    assert unknown.exit_code == 1
    assert (
        "policy_error: Target 'shadow' is not in the policy for model 'wine-rf'" in unknown.output
    )
