"""One policy file for a team registry: a classifier and a regressor both reach
``production``, each judged by its own suites and metrics (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import MlflowModel, Server, canonical, evidence_bundle, make_server

TEAM = """
version: 1
targets:
  production:
    protected: true
    checks:
      suites: [wine_train]
      metrics:
        accuracy: {threshold: 0.8}
      smoke_test: true
    approvals: {count: 1, roles: [approver, admin]}
models:
  "diabetes-*":
    targets:
      production:
        checks:
          suites: [diabetes_train]
          metrics:
            rmse: {threshold: 70}
"""


@pytest.fixture
def team(database_url: str, tmp_path: Path, mlflow_model: MlflowModel) -> Iterator[Server]:
    policy = tmp_path / "promotion-policy.yaml"
    policy.write_text(TEAM)
    srv = make_server(database_url, policy, mlflow_model, "", governed_models="*")  # all teams
    yield srv
    srv.close()


def _record(srv: Server, name: str, suite: str, metrics: dict[str, float]) -> tuple[int, str]:
    """Register a version and record evidence naming ``suite`` and ``metrics``."""
    model = srv.model
    version = model.register(name)
    bundle: dict[str, Any] = evidence_bundle(name, version, model.run_id)
    bundle["validation"][0]["suite"] = suite
    bundle["evaluation"]["metrics"] = {"candidate": metrics, "champion": None}
    digest = hashlib.sha256(canonical(bundle)).hexdigest()
    path = f"mlops/evidence/{digest}.json"
    client = model.client()
    client.log_text(model.run_id, canonical(bundle).decode(), path)
    client.set_model_version_tag(name, str(version), "mlops.evidence.digest", digest)
    client.set_model_version_tag(name, str(version), "mlops.evidence.path", path)
    return version, digest


def _promote(srv: Server, name: str, version: int, digest: str) -> dict[str, Any]:
    res = srv.request(name, version, digest)
    assert res.status_code == 201, res.json()
    return srv.approve(res.json()["id"], "ann").json()


def test_classifier_and_regressor_reach_production_under_one_file(team: Server) -> None:
    clf, reg = f"wine-{uuid.uuid4().hex[:8]}", f"diabetes-{uuid.uuid4().hex[:8]}"
    clf_version, clf_digest = _record(team, clf, "wine_train", {"accuracy": 0.93})
    reg_version, reg_digest = _record(team, reg, "diabetes_train", {"rmse": 54.0, "r2": 0.45})

    assert _promote(team, clf, clf_version, clf_digest)["state"] == "promoted"
    done = _promote(team, reg, reg_version, reg_digest)
    assert done["state"] == "promoted"
    assert [r["rule"] for r in done["verdict"]["rules"]] == [
        "target.known",
        "checks.suites.diabetes_train",
        "checks.metrics.rmse",
        "checks.smoke_test",
    ]
    gw = team.model.client()
    assert int(gw.get_model_version_by_alias(reg, "production").version) == reg_version
    assert int(gw.get_model_version_by_alias(clf, "production").version) == clf_version


def test_a_regressor_is_refused_by_its_own_rules_not_the_classifiers(team: Server) -> None:
    reg = f"diabetes-{uuid.uuid4().hex[:8]}"
    version, digest = _record(team, reg, "wine_train", {"rmse": 75.0})
    res = team.request(reg, version, digest)
    assert res.status_code == 422
    body = res.json()
    assert body["code"] == "policy_violation"
    assert [r["rule"] for r in body["details"]["rules"]] == [
        "checks.suites.diabetes_train",
        "checks.metrics.rmse",
    ]
    assert "rmse: 75 is not <= threshold 70" in body["message"]
