"""The pure functions of the DVC stage scripts, one by one (no ``dvc repro`` here)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from mlops.errors import ConfigError, DataNotTrackedError, DataValidationFailed, StaleDataError
from pipelines import _common, evaluate, package, prepare, request, train, validate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def iris() -> pd.DataFrame:
    return prepare.iris_frame()


# --- _common ------------------------------------------------------------------------------
def test_params_reads_a_section_and_names_a_missing_one(tmp_path: Path) -> None:
    file = tmp_path / "params.yaml"
    file.write_text("train: {C: 0.5, max_iter: 10}\n")
    assert _common.params("train", path=file) == {"C": 0.5, "max_iter": 10}
    with pytest.raises(ConfigError, match=r"params\.yaml has no mapping 'prepare'"):
        _common.params("prepare", path=file)
    with pytest.raises(ConfigError, match="does not exist"):
        _common.params("train", path=tmp_path / "missing.yaml")


def test_need_checks_presence_and_type_and_refuses_bools_as_numbers() -> None:
    assert _common.need({"seed": 3}, "seed", int, where="prepare") == 3
    with pytest.raises(ConfigError, match=r"misses prepare\.seed"):
        _common.need({}, "seed", int, where="prepare")
    with pytest.raises(ConfigError, match=r"prepare\.seed must be int, got 'x'"):
        _common.need({"seed": "x"}, "seed", int, where="prepare")
    with pytest.raises(ConfigError, match=r"prepare\.seed must be int, got True"):
        _common.need({"seed": True}, "seed", int, where="prepare")
    assert _common.need({"submit": False}, "submit", bool, where="promotion") is False


def test_write_json_is_stable_and_read_json_names_a_missing_input(tmp_path: Path) -> None:
    out = _common.write_json(tmp_path / "a" / "b.json", {"b": 1, "a": [1, 2]})
    assert out.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2) + "\n"
    assert _common.read_json(out) == {"a": [1, 2], "b": 1}
    with pytest.raises(ConfigError, match=r"stage input .*nope\.json.* does not exist"):
        _common.read_json(tmp_path / "nope.json")


def test_run_turns_an_mlops_error_into_exit_1_with_code_and_hint(capsys) -> None:
    def boom() -> None:
        raise ConfigError("params.yaml train.C must be float, got 'x'.", hint="Fix train.C.")

    assert _common.run(boom) == 1
    err = capsys.readouterr().err
    assert "error: config_error: params.yaml train.C must be float, got 'x'." in err
    assert "hint: Fix train.C." in err
    assert _common.run(lambda: None) == 0


def _lock(path: str, data: bytes) -> str:
    md5 = hashlib.md5(data).hexdigest()
    return (
        "schema: '2.0'\nstages:\n  prepare:\n    cmd: python -m pipelines.prepare\n"
        f"    outs:\n    - path: {path}\n      hash: md5\n      md5: {md5}\n"
        f"      size: {len(data)}\n"
    )


def test_train_data_is_the_workspace_record_prepare_left_in_dvc_lock(dvc_repo) -> None:
    data = b"a,target\n1,0\n2,1\n"
    (dvc_repo.root / "data").mkdir()
    (dvc_repo.root / "data" / "train.csv").write_bytes(data)
    (dvc_repo.root / "dvc.lock").write_text(_lock("data/train.csv", data))  # not committed

    ds = validate.train_data()

    assert (ds.path, ds.md5, ds.size) == ("data/train.csv", hashlib.md5(data).hexdigest(), 17)
    assert (ds.rev, ds.committed) == (dvc_repo.git("rev-parse", "HEAD"), False)
    assert ds.remote == str(dvc_repo.remote)
    assert Path(ds.repo) == dvc_repo.root.resolve()


def test_train_data_refuses_edited_or_unrecorded_outputs(dvc_repo) -> None:
    (dvc_repo.root / "data").mkdir()
    (dvc_repo.root / "data" / "train.csv").write_bytes(b"a\n1\n")
    with pytest.raises(DataNotTrackedError, match=r"'data/train\.csv' is not tracked by DVC at"):
        validate.train_data()
    (dvc_repo.root / "dvc.lock").write_text(_lock("data/train.csv", b"a\n2\n"))
    with pytest.raises(
        StaleDataError, match=r"'data/train\.csv' changed .* the workspace dvc\.lock recorded"
    ):
        validate.train_data()


# --- prepare ------------------------------------------------------------------------------
def test_split_is_stratified_disjoint_and_reproducible(iris: pd.DataFrame) -> None:
    train_a, eval_a = prepare.split_frame(iris, test_size=0.3, seed=42)
    _, eval_b = prepare.split_frame(iris, test_size=0.3, seed=42)
    _, eval_c = prepare.split_frame(iris, test_size=0.3, seed=7)

    assert (len(train_a), len(eval_a)) == (105, 45)
    assert eval_a["target"].value_counts().to_dict() == {0: 15, 1: 15, 2: 15}
    pd.testing.assert_frame_equal(eval_a, eval_b)
    assert not eval_a.equals(eval_c)
    joined = pd.concat([train_a, eval_a]).sort_values(list(iris.columns), ignore_index=True)
    pd.testing.assert_frame_equal(joined, iris.sort_values(list(iris.columns), ignore_index=True))
    assert list(train_a.columns) == list(iris.columns)


def test_split_refuses_an_impossible_test_size_and_a_missing_target(iris: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match=r"prepare\.test_size must be between 0 and 1.*1\.5"):
        prepare.split_frame(iris, test_size=1.5, seed=0)
    with pytest.raises(ConfigError, match="no target column 'label'"):
        prepare.split_frame(iris, test_size=0.3, seed=0, target="label")


# --- validate -----------------------------------------------------------------------------
def _report(*results: dict, success: bool) -> dict:
    n_ok = sum(r["success"] for r in results)
    stats = {
        "evaluated": len(results),
        "successful": n_ok,
        "unsuccessful": len(results) - n_ok,
        "success_percent": 100.0 * n_ok / len(results),
    }
    return {
        "suite": "iris_train",
        "success": success,
        "statistics": stats,
        "rows": 105,
        "results": list(results),
    }


def _result(type_: str, column: str | None, success: bool, **observed) -> dict:
    return {
        "type": type_,
        "column": column,
        "kwargs": {"column": column},
        "success": success,
        "observed": observed,
    }


def test_check_names_every_failed_expectation_with_what_was_observed() -> None:
    report = _report(
        _result("expect_column_values_to_not_be_null", "target", True),
        _result(
            "expect_column_values_to_be_between", "sepal length (cm)", False, unexpected_count=12
        ),
        _result("expect_table_row_count_to_be_between", None, False, observed_value=3),
        success=False,
    )
    assert validate.failed_expectations(report) == [
        "expect_column_values_to_be_between[sepal length (cm)] (12 unexpected)",
        "expect_table_row_count_to_be_between (observed 3)",
    ]
    with pytest.raises(
        DataValidationFailed,
        match=r"Suite 'iris_train' failed 2 expectation\(s\).*"
        r"expect_column_values_to_be_between\[sepal length \(cm\)\] \(12 unexpected\); "
        r"expect_table_row_count_to_be_between",
    ):
        validate.check(report)


def test_check_passes_a_passing_report_and_metrics_are_flat() -> None:
    report = _report(_result("expect_column_values_to_not_be_null", "target", True), success=True)
    validate.check(report)
    assert validate.validation_metrics(report) == {
        "suite": "iris_train",
        "success": True,
        "rows": 105,
        "evaluated": 1,
        "unsuccessful": 0,
        "success_percent": 100.0,
    }


def test_the_repository_suite_passes_on_the_prepared_train_split(iris: pd.DataFrame) -> None:
    from mlops.validation import validate as gx_validate

    train_frame, _ = prepare.split_frame(iris, test_size=0.3, seed=42)
    report = gx_validate(train_frame, ROOT / "suites" / "iris_train.yaml", log=False).to_dict()
    assert report["success"], validate.failed_expectations(report)
    broken = train_frame.assign(**{"sepal length (cm)": train_frame["sepal length (cm)"] * 10})
    bad = gx_validate(broken, ROOT / "suites" / "iris_train.yaml", log=False).to_dict()
    with pytest.raises(DataValidationFailed, match=r"between\[sepal length \(cm\)\]"):
        validate.check(bad)


# --- train --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("logistic_regression", "LogisticRegression"),
        ("random_forest", "RandomForestClassifier"),
        ("svc", "SVC"),
    ],
)
def test_make_estimator_builds_each_model_from_params(kind: str, cls: str) -> None:
    p = {"model": kind, "C": 0.5, "max_iter": 50, "n_estimators": 5, "seed": 1}
    assert type(train.make_estimator(p)).__name__ == cls


def test_make_estimator_names_an_unknown_model() -> None:
    with pytest.raises(ConfigError, match=r"train\.model must be one of .*got 'xgboost'"):
        train.make_estimator({"model": "xgboost"})


@pytest.mark.parametrize("kind", train.MODELS)
def test_every_train_model_choice_logs_and_registers(
    kind: str, lineage_run, model_name: str, iris: pd.DataFrame
) -> None:
    """params.yaml's own ``train.model: random_forest`` used to fail at log_model."""
    import mlops

    _repo, ds, _run_id = lineage_run
    p = {"name": model_name, "model": kind, "C": 1.0, "max_iter": 300, "n_estimators": 5}
    out = train.train_and_register(iris, ds, {**p, "seed": 0})
    assert (out["name"], out["version"]) == (model_name, 1)
    loaded = mlops.registry.load_model(model_name, 1)
    assert len(loaded.predict(iris.drop(columns=["target"]).head(4))) == 4


def test_fit_learns_iris(iris: pd.DataFrame) -> None:
    estimator = train.make_estimator({"model": "logistic_regression", "C": 1.0, "max_iter": 200})
    model, accuracy = train.fit(iris, estimator)
    assert accuracy > 0.9
    assert list(model.feature_names_in_) == [c for c in iris.columns if c != "target"]


# --- evaluate -----------------------------------------------------------------------------
def test_confusion_points_keep_one_row_per_sample() -> None:
    frame = evaluate.confusion_points([0, 1, 2], [0, 2, 2])
    assert frame.to_dict("records") == [
        {"actual": 0, "predicted": 0},
        {"actual": 1, "predicted": 2},
        {"actual": 2, "predicted": 2},
    ]


def test_roc_points_run_from_origin_to_one_and_are_monotonic() -> None:
    from sklearn.metrics import auc

    perfect = evaluate.roc_points([0, 1, 2], [[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 1, 2])
    assert auc(perfect["fpr"], perfect["tpr"]) == pytest.approx(1.0)
    noisy = evaluate.roc_points(
        [0, 1, 2, 1],
        [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7], [0.2, 0.7, 0.1]],
        [0, 1, 2],
    )
    assert list(noisy.columns) == ["fpr", "tpr"]
    assert noisy.iloc[0].tolist() == [0.0, 0.0] and noisy.iloc[-1].tolist() == [1.0, 1.0]
    assert noisy["fpr"].is_monotonic_increasing and noisy["tpr"].is_monotonic_increasing
    assert 0.5 < auc(noisy["fpr"], noisy["tpr"]) < 1.0


def test_roc_points_handle_two_classes() -> None:
    frame = evaluate.roc_points(["a", "b"], [[0.9, 0.1], [0.2, 0.8]], ["a", "b"])
    assert frame.iloc[-1].tolist() == [1.0, 1.0]


def _evaluation(champion: dict | None) -> dict:
    return {
        "metrics": {"candidate": {"accuracy": 0.9, "f1_macro": 0.88}, "champion": champion},
        "passed": True,
        "beats_champion": None if champion is None else True,
        "candidate_version": 2,
        "champion_version": None if champion is None else 1,
        "rows": 45,
    }


def test_eval_metrics_are_flat_numbers_plus_the_champion_when_there_is_one() -> None:
    assert evaluate.eval_metrics(_evaluation(None)) == {
        "accuracy": 0.9,
        "f1_macro": 0.88,
        "passed": True,
        "beats_champion": None,
        "candidate_version": 2,
        "champion_version": None,
        "rows": 45,
    }
    with_champion = evaluate.eval_metrics(_evaluation({"accuracy": 0.8, "f1_macro": 0.79}))
    assert with_champion["champion"] == {"accuracy": 0.8, "f1_macro": 0.79}
    assert with_champion["champion_version"] == 1


def test_policy_thresholds_come_from_the_repository_policy() -> None:
    rules = evaluate.policy_thresholds(ROOT / "promotion-policy.yaml", "production")
    assert rules["accuracy"]["threshold"] == 0.8
    assert rules["accuracy"]["greater_is_better"] is True
    from mlops.errors import PolicyError

    with pytest.raises(PolicyError, match="Target 'canary' is not in the policy"):
        evaluate.policy_thresholds(ROOT / "promotion-policy.yaml", "canary")


# --- package ------------------------------------------------------------------------------
def test_sample_frame_drops_the_target_and_keeps_the_first_rows() -> None:
    frame = pd.DataFrame({"x": [1, 2, 3], "y": [4, 5, 6], "target": [0, 1, 0]})
    assert package.sample_frame(frame, target="target", rows=2).to_dict("list") == {
        "x": [1, 2],
        "y": [4, 5],
    }
    with pytest.raises(ConfigError, match=r"package\.sample_rows must be at least 1, got 0"):
        package.sample_frame(frame, target="target", rows=0)


# --- request ------------------------------------------------------------------------------
MODEL = {"name": "iris-classifier", "version": 3, "run_id": "r1"}
FAILED = {
    "passed": False,
    "rules": [
        {"rule": "target.known", "passed": True, "reason": "production is known"},
        {"rule": "checks.metrics.accuracy", "passed": False, "reason": "accuracy 0.7 < 0.8"},
    ],
}


def test_summary_of_a_blocked_request_names_the_failed_rules() -> None:
    doc = request.summary(
        MODEL, target="production", digest="d" * 64, verdict=FAILED, promotion=None
    )
    assert doc["state"] == "blocked" and doc["submitted"] is False and doc["id"] is None
    assert doc["blocked_by"] == ["checks.metrics.accuracy: accuracy 0.7 < 0.8"]
    assert doc["evidence_digest"] == "d" * 64


def test_summary_of_a_submitted_request_carries_the_server_state() -> None:
    verdict = {"passed": True, "rules": []}
    promotion = {
        "id": 7,
        "state": "pending",
        "quorum": {"have": 0, "need": 2},
        "blocked_by": ["needs 2 approvals, has 0"],
    }
    doc = request.summary(
        MODEL, target="production", digest="e" * 64, verdict=verdict, promotion=promotion
    )
    assert (doc["id"], doc["state"], doc["submitted"]) == (7, "pending", True)
    assert doc["quorum"] == {"have": 0, "need": 2}
    assert doc["blocked_by"] == ["needs 2 approvals, has 0"]
    unsent = request.summary(
        MODEL, target="production", digest="e" * 64, verdict=verdict, promotion=None
    )
    assert unsent["state"] == "not_submitted" and unsent["blocked_by"] == []


def test_train_records_model_class_params_and_the_dvc_experiment(
    dvc_repo, mlflow_home, iris: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    import mlops

    (dvc_repo.root / "data").mkdir()
    iris.to_csv(dvc_repo.root / "data" / "train.csv", index=False)
    dvc_repo.dvc("add", "-q", "data/train.csv")
    dvc_repo.commit("train split")
    ds = mlops.data.version("data/train.csv")
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-svc")  # as `dvc exp run` sets it for the stage
    params = {"name": f"stage-{dvc_repo.root.parent.name}", "model": "svc", "C": 0.5, "seed": 1}
    out = train.train_and_register(iris, ds, params)
    run = MlflowClient().get_run(out["run_id"])
    assert run.data.tags["mlops.model.class"] == "sklearn.svm._classes.SVC"
    assert run.data.tags["mlops.dvc.exp_name"] == "brisk-svc"
    assert run.data.tags["mlops.git_dirty"] == "false"
    assert run.data.params == {"C": "0.5", "model": "svc", "seed": "1"}


def test_recorded_evidence_puts_the_data_docs_where_the_reviewer_page_links(
    lineage_model, iris: pd.DataFrame
) -> None:
    """The validate stage runs before the model exists (log=False); the request stage
    logs its report and page on the model's run, so the Data Docs link is no 404."""
    from mlflow.tracking import MlflowClient

    from mlops.validation import validate as gx_validate
    from registry_server.web._queries import DATA_DOCS_DIR

    report = gx_validate(iris, ROOT / "suites" / "iris_train.yaml", log=False).to_dict()
    model = {"name": lineage_model.name, "version": lineage_model.version}
    bundle = request.record_evidence(
        model, {"validation": report, "evaluation": None, "package": None}
    )
    assert bundle.validation[0]["suite"] == "iris_train"
    client = MlflowClient()
    files = {f.path for f in client.list_artifacts(lineage_model.run_id, DATA_DOCS_DIR)}
    assert f"{DATA_DOCS_DIR}/iris_train.html" in files
    page = Path(client.download_artifacts(lineage_model.run_id, f"{DATA_DOCS_DIR}/iris_train.html"))
    assert "iris_train" in page.read_text()


def test_an_experiment_submits_when_asked_explicitly() -> None:
    experiment_name, should_submit = request.experiment_name, request.should_submit
    assert should_submit({"submit": True}, None) is True
    assert should_submit({"submit": True}, "exp-1") is False
    assert should_submit({"submit": True, "submit_experiments": True}, "exp-1") is True
    assert should_submit({"submit": False, "submit_experiments": True}, None) is False
    assert experiment_name({"DVC_EXP_NAME": "exp-1"}) == "exp-1"
    assert experiment_name({"DVC_EXP_BASELINE_REV": "abcdef0123"}) == "abcdef0"
    assert experiment_name({}) is None
