"""``mlops.promote``: real GX validation, evaluation, a built and served Bento, recorded
evidence, the local policy verdict and the request to the server app (``TestClient``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import mlops
from mlops.errors import ConfigError, EvidenceError, EvidenceMismatch, PolicyViolation
from mlops.evidence import Evidence
from mlops.promotion import PromotionHandle, PromotionTimeout, precheck, resolve_policy, submit
from mlops.validation import Suite
from tests import _evidence
from tests.conftest import SKLEARN_REQUIREMENTS, DvcRepo, LineageModel, write_iris
from tests.test_client import Registry, open_registry

POLICY = """
version: 1
targets:
  production:
    protected: true
    checks:
      suites: [iris_clean]
      metrics:
        accuracy: {threshold: 0.8, min_absolute_change: 0.0}
      must_beat_champion: true
      smoke_test: true
    approvals: {count: 1, roles: [approver, admin]}
"""
CLEAN = Suite(
    "iris_clean",
    [
        {"type": "expect_column_to_exist", "kwargs": {"column": "target"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "target"}},
    ],
)
# iris sepal lengths are 4.3-7.9 cm: this suite must fail
STRICT = Suite(
    "iris_clean",
    [
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "sepal length (cm)", "min_value": 0, "max_value": 1},
        }
    ],
)


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("promote-policy") / "promotion-policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture(scope="module")
def gate(
    tmp_path_factory: pytest.TempPathFactory, mlflow_home: Path, policy_path: Path
) -> Iterator[Registry]:
    with open_registry(tmp_path_factory.mktemp("promote-registry"), policy_path) as reg:
        yield reg


@pytest.fixture
def signed_model(mlflow_home: Path, dvc_repo: DvcRepo, model_name: str) -> LineageModel:
    """Like ``lineage_model``, but logged with an input signature (packaging needs one)."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    write_iris(dvc_repo.root / "data" / "iris.csv")
    dvc_repo.dvc("add", "-q", "data/iris.csv")
    dvc_repo.commit("track iris")
    dvc_repo.dvc("push", "-q")
    ds = mlops.data.version("data/iris.csv")
    with mlops.start_run("promote-model", datasets=[ds]) as run:
        df = mlops.data.read_dataframe(ds)
        x, y = df.drop(columns=["target"]), df["target"]
        clf = LogisticRegression(max_iter=500).fit(x, y)
        signature = infer_signature(x, clf.predict(x))
        mlflow.sklearn.log_model(
            clf, name="model", signature=signature, pip_requirements=SKLEARN_REQUIREMENTS
        )
    mv = mlops.register(run, model_name)
    return LineageModel(model_name, mv.version, ds, run.run_id, dvc_repo)


def _bundle(name: str, *, accuracy: float, smoke: bool | None) -> Evidence:
    """Evidence for version 1 of ``name`` without validation (and without a package
    section when ``smoke`` is ``None``)."""
    return Evidence.from_dict(
        _evidence.bundle(
            name,
            1,
            accuracy=accuracy,
            validation=False,
            package=smoke is not None,
            smoke_ok=bool(smoke),
        )
    )


def test_precheck_lists_every_failed_rule(policy_path: Path):
    policy = resolve_policy(policy_path)
    with pytest.raises(
        PolicyViolation, match=r"churn v1 cannot be promoted to 'production': 3 rule"
    ) as info:
        precheck(_bundle("churn", accuracy=0.5, smoke=None), policy, "production")
    failed = [r.rule for r in info.value.verdict.failures]
    assert failed == ["checks.suites.iris_clean", "checks.metrics.accuracy", "checks.smoke_test"]
    assert info.value.details["failures"][1]["reason"].startswith(
        "accuracy: 0.5 is not >= threshold 0.8"
    )


def test_handle_not_submitted_has_no_server_state():
    handle = PromotionHandle(None, None)
    assert (handle.state, handle.id, handle.blocked_by, handle.final) == (
        "not submitted",
        None,
        (),
        False,
    )
    with pytest.raises(ConfigError, match="not submitted yet"):
        handle.wait(timeout=1)
    assert handle.to_dict() == {"promotion": None, "verdict": None, "evidence_digest": None}


def test_submit_needs_recorded_evidence(gate: Registry, lineage_model: LineageModel):
    with pytest.raises(
        EvidenceError, match=r"has no recorded evidence \(tag 'mlops.evidence.digest'\)"
    ):
        submit(
            lineage_model.name, lineage_model.version, to="production", client=gate.client("rita")
        )
    assert list(gate.client("ann").list_promotions(model=lineage_model.name)) == []


def _passing_bundle(model: LineageModel) -> Evidence:
    """Passing evidence for the version, with the lineage its run really recorded (the
    server compares the two)."""
    bundle = _evidence.bundle(
        model.name,
        model.version,
        model.run_id,
        suite="iris_clean",
        datasets=[model.dataset.to_dict()],
    )
    return Evidence.from_dict(bundle)


def test_submit_closes_the_client_it_creates_and_keeps_a_given_one_open(
    gate: Registry, lineage_model: LineageModel, monkeypatch: pytest.MonkeyPatch
):
    """Without client=, submit() builds one from the settings and closes it, also when
    the server refuses; each later refresh uses a short-lived client of its own."""
    from starlette.testclient import TestClient

    from mlops import evidence
    from mlops.client import RegistryClient

    made: list[RegistryClient] = []

    def from_settings() -> RegistryClient:  # as MLOPS_REGISTRY_URL would, to the same app
        client = RegistryClient(http=TestClient(gate.http.app), token=gate.tokens["rita"])
        client._owns_http = True
        made.append(client)
        return client

    monkeypatch.setattr("mlops.promotion.RegistryClient", from_settings)
    name, version = lineage_model.name, lineage_model.version
    digest = evidence.record(_passing_bundle(lineage_model))
    with pytest.raises(EvidenceMismatch, match=f"Request names evidence {'0' * 64}"):
        submit(name, version, to="production", digest="0" * 64)
    assert len(made) == 1 and made[0].http.is_closed

    handle = submit(name, version, to="production")
    assert (handle.state, handle.promotion.evidence_digest) == ("pending", digest)
    assert handle.client is None and len(made) == 2 and made[1].http.is_closed
    assert handle.refresh().state == "pending"
    assert len(made) == 3 and made[2].http.is_closed

    given = gate.client("rita")
    again = submit(name, version, to="production", client=given)
    assert again.client is given and not given.http.is_closed
    assert again.refresh().state == "pending" and len(made) == 3
    assert handle.refresh().state == "superseded"


def test_failing_suite_fails_fast_without_touching_the_server(
    gate: Registry, lineage_model: LineageModel, policy_path: Path
):
    from mlflow.tracking import MlflowClient

    name, version = lineage_model.name, lineage_model.version
    with pytest.raises(
        PolicyViolation, match=r"checks\.suites\.iris_clean: suite 'iris_clean' failed"
    ) as info:
        mlops.promote(
            name,
            version,
            to="production",
            suites=[STRICT],
            target="target",
            policy=policy_path,
            client=gate.client("rita"),
        )
    assert [r.rule for r in info.value.verdict.failures] == ["checks.suites.iris_clean"]
    assert list(gate.client("ann").list_promotions(model=name)) == []
    tags = MlflowClient().get_model_version(name, str(version)).tags
    assert "mlops.evidence.digest" not in tags


@pytest.mark.slow
def test_promote_happy_path(gate: Registry, signed_model: LineageModel, policy_path: Path):
    from mlflow.tracking import MlflowClient

    name, version = signed_model.name, signed_model.version
    handle = mlops.promote(
        name,
        version,
        to="production",
        eval_data=signed_model.dataset,
        target="target",
        suites=[CLEAN],
        policy=policy_path,
        client=gate.client("rita"),
        submit=False,
    )
    assert handle.state == "not submitted" and handle.verdict.passed
    assert list(gate.client("ann").list_promotions(model=name)) == []
    evidence = handle.evidence
    assert evidence.package["smoke"]["passed"] is True and evidence.package["smoke"]["rows"] == 5
    assert evidence.validation[0]["suite"] == "iris_clean" and evidence.validation[0]["success"]
    assert evidence.lineage["datasets"][0]["md5"] == signed_model.dataset.md5
    tags = MlflowClient().get_model_version(name, str(version)).tags
    assert tags["mlops.evidence.digest"] == evidence.digest

    handle.submit(name, version, to="production")
    assert isinstance(handle, PromotionHandle) and handle.state == "pending"
    assert handle.blocked_by == ("approvals: 0 of 1 required",)
    local = [r.to_dict() for r in handle.verdict.rules if r.rule != "freeze"]
    assert [r.to_dict() for r in handle.promotion.rules] == local  # same policy, same verdict
    assert "Why blocked" in handle._repr_html_() and "[pending]" in str(handle)
    with pytest.raises(PromotionTimeout, match=rf"#{handle.id} is still 'pending' after 0.3s"):
        handle.wait(timeout=0.3, interval=0.1)

    gate.client("ann").approve(handle.id, comment="evidence reviewed")
    assert handle.wait(timeout=10, interval=0.1).state == "promoted" and handle.final
    assert int(MlflowClient().get_model_version_by_alias(name, "production").version) == version
    assert handle.to_dict()["promotion"]["evidence_digest"] == evidence.digest


# Wine-like training data with nulls and out-of-range values (issue #11: a blocked
# validation named no expectation and left no report anywhere).
WINE_TRAIN = Suite(
    "wine_train",
    [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "alcohol"}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "ash", "min_value": 1.0, "max_value": 3.5},
        },
        {"type": "expect_column_to_exist", "kwargs": {"column": "target"}},
    ],
)


def test_a_blocked_validation_names_each_failed_expectation_and_is_recorded(
    lineage_model: LineageModel,
):
    import pandas as pd
    from mlflow.tracking import MlflowClient

    name, version = lineage_model.name, lineage_model.version
    frame = pd.DataFrame(
        {
            "alcohol": [13.2, None, 12.8, None, 14.1],
            "ash": [2.4, 2.1, 9.9, 2.6, -1.0],
            "target": [0, 1, 1, 2, 0],
        }
    )
    with pytest.raises(PolicyViolation) as info:
        mlops.promote(
            name,
            version,
            to="production",
            data=frame,
            suites=[WINE_TRAIN],
            target="target",
            policy={"targets": {"production": {"checks": {"suites": ["wine_train"]}}}},
            submit=False,
        )
    message = str(info.value)
    assert "suite 'wine_train' failed (2 expectation(s) unsuccessful)" in message
    assert "expect_column_values_to_not_be_null on column alcohol: 2 unexpected" in message
    assert "expect_column_values_to_be_between on column ash: 2 unexpected, e.g. [9.9, -1.0]" in (
        message
    )
    (failure,) = info.value.verdict.failures
    assert "column ash" in failure.reason and "column alcohol" in failure.reason

    # the report and its Data Docs are on the candidate's run, blocked as it is
    client = MlflowClient()
    run_id = lineage_model.run_id
    files = {f.path for f in client.list_artifacts(run_id, "mlops/validation")}
    assert {"mlops/validation/wine_train.json", "mlops/validation/wine_train.html"} <= files
    local = client.download_artifacts(run_id, "mlops/validation/wine_train.json")
    saved = json.loads(Path(local).read_text())
    assert saved["success"] is False
    assert sorted(r["column"] for r in saved["results"] if not r["success"]) == ["alcohol", "ash"]

    # asking for the request later says why there is no evidence, and where to read it
    with pytest.raises(EvidenceError, match=r"promote\(\) was blocked before recording it") as err:
        submit(name, version, to="production")
    assert f"run {run_id}" in err.value.hint
    assert "mlops/validation/<suite>.json" in err.value.hint


def test_a_policy_metric_the_evaluation_lacks_is_named_by_its_key_path(
    lineage_model: LineageModel,
):
    """A regressor's rmse rule applied to a classifier: the hint speaks the policy file."""
    from mlops.errors import PolicyError
    from mlops.policy import parse_policy
    from mlops.promotion import run_evaluation

    policy = parse_policy(
        {"targets": {"production": {"checks": {"metrics": {"rmse": {"threshold": 70}}}}}}
    )
    frame = mlops.data.read_dataframe(lineage_model.dataset)
    with pytest.raises(
        PolicyError, match=r"names metric\(s\) \['rmse'\] that the evaluation does not compute"
    ) as err:
        run_evaluation(
            lineage_model.name,
            lineage_model.version,
            to="production",
            data=frame,
            target="target",
            policy=policy,
        )
    assert err.value.hint.startswith(
        "Fix targets.production.checks.metrics.rmse in promotion-policy.yaml"
    )


# --- pushing the data the server re-derives from -----------------------------------------
def test_push_data_sends_what_the_target_verifies_from_and_nothing_else(dvc_repo) -> None:
    from mlops import data
    from mlops.promotion import push_data

    for name, rows in (("train.csv", "1,2\n"), ("eval.csv", "3,4\n"), ("other.csv", "5,6\n")):
        (dvc_repo.root / name).write_text("x,y\n" + rows)
    dvc_repo.dvc("add", "-q", "train.csv", "eval.csv", "other.csv")
    dvc_repo.commit("track")
    train, ev = data.version("train.csv").to_dict(), data.version("eval.csv").to_dict()
    far = {**data.version("other.csv").to_dict(), "repo": "/no/such/checkout"}
    bundle = {
        "model": {"name": "churn", "version": 1},
        "validation": [{"suite": "s", "dataset": train}, {"suite": "t", "dataset": far}],
        "evaluation": {"dataset": ev},
    }
    targets = {
        "production": {"verify": ["validation", "evaluation"]},
        "staging": {"verify": ["evaluation"]},
        "dev": {},
    }
    policy = resolve_policy({"targets": targets})

    def held() -> set[str]:
        return {p.parent.name + p.name for p in dvc_repo.remote.glob("files/md5/*/*")}

    assert push_data(bundle, policy, "dev") == 0 and held() == set()  # verifies nothing
    assert push_data(bundle, policy, "staging") == 1 and held() == {ev["md5"]}
    # train.csv too; other.csv's repository is not on this machine: left to its owner
    assert push_data(bundle, policy, "production") == 1
    assert held() == {ev["md5"], train["md5"]}
