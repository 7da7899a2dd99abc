"""Candidate vs. champion on real MLflow (SQLite store) with real scikit-learn models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.errors import EvaluationError, ModelVersionNotFound
from mlops.evaluation import EvaluationReport, MetricThreshold, evaluate

CONTRACT_KEYS = {
    "model",
    "candidate_version",
    "champion_alias",
    "champion_version",
    "champion_run_id",
    "task",
    "dataset",
    "rows",
    "metrics",
    "verdicts",
    "beats_champion",
    "passed",
    "notes",
    "label",  # the label column, so the server can re-run the evaluation
}


# --- helpers shared with test_evidence ---------------------------------------------------
def log_model(estimator: Any) -> str:
    """Log a fitted estimator in a fresh mlops run; return the run id."""
    import mlflow

    import mlops

    with mlops.start_run("test-model") as run:
        mlflow.sklearn.log_model(estimator, name="model", pip_requirements=["scikit-learn"])
    return run.run_id


def register(run_id: str, name: str) -> int:
    """Register the run's model under ``name``; return the new version number."""
    import mlflow

    return int(mlflow.register_model(f"runs:/{run_id}/model", name).version)


def set_production(name: str, version: int) -> None:
    import mlflow

    mlflow.MlflowClient().set_registered_model_alias(name, "production", str(version))


# --- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def iris() -> pd.DataFrame:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in frame.columns]
    return frame


@pytest.fixture(scope="module")
def classifiers(mlflow_home: Path, iris: pd.DataFrame) -> dict[str, str]:
    """Run ids of a good and a weak iris classifier (logged once, registered per test)."""
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = iris.drop(columns=["target"]), iris["target"]
    good = LogisticRegression(max_iter=500).fit(x, y)
    weak = DummyClassifier(strategy="most_frequent").fit(x, y)
    return {"good": log_model(good), "weak": log_model(weak)}


@pytest.fixture(scope="module")
def regression_data() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    x = rng.normal(size=400)
    return pd.DataFrame({"x": x, "noise": rng.normal(size=400), "y": 2 * x + rng.normal(size=400)})


@pytest.fixture(scope="module")
def regressors(mlflow_home: Path, regression_data: pd.DataFrame) -> dict[str, Any]:
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import LinearRegression

    x, y = regression_data.drop(columns=["y"]), regression_data["y"]
    linear = LinearRegression().fit(x, y)
    mean = DummyRegressor(strategy="mean").fit(x, y)
    return {"linear": log_model(linear), "mean": log_model(mean), "estimator": linear}


# --- no champion ------------------------------------------------------------------------
def test_without_champion_only_absolute_thresholds_apply(
    iris: pd.DataFrame, classifiers: dict[str, str], model_name: str
) -> None:
    version = register(classifiers["good"], model_name)
    rule = MetricThreshold(threshold=0.9, min_absolute_change=0.0, min_relative_change=0.5)

    report = evaluate(
        model_name, version, data=iris, target="target", thresholds={"accuracy": rule}, log=False
    )

    assert report.task == "classification"
    assert report.champion_version is None and report.champion_run_id is None
    assert report.champion_metrics is None
    assert report.beats_champion is None
    assert report.passed is True
    assert any("only absolute thresholds applied" in n for n in report.notes)
    (verdict,) = report.verdicts
    assert verdict.champion is None
    assert verdict.reasons[0].startswith("accuracy 0.9")
    assert ">= threshold 0.9" in verdict.reasons[0]
    assert "min_absolute_change skipped: no champion to compare with" in verdict.reasons
    assert "min_relative_change skipped: no champion to compare with" in verdict.reasons


def test_without_champion_a_missed_threshold_fails_naming_the_numbers(
    iris: pd.DataFrame, classifiers: dict[str, str], model_name: str
) -> None:
    version = register(classifiers["weak"], model_name)

    report = evaluate(
        model_name,
        version,
        data=iris,
        target="target",
        thresholds={"accuracy": {"threshold": 0.8}},
        log=False,
    )

    assert report.passed is False
    assert [v.metric for v in report.failures] == ["accuracy"]
    assert report.failures[0].reasons == ("accuracy 0.3333 < threshold 0.8",)
    assert report.candidate_metrics["accuracy"] == pytest.approx(1 / 3)


# --- against a champion -----------------------------------------------------------------
def test_weak_candidate_fails_against_the_champion(
    iris: pd.DataFrame, classifiers: dict[str, str], model_name: str
) -> None:
    champion = register(classifiers["good"], model_name)
    set_production(model_name, champion)
    candidate = register(classifiers["weak"], model_name)
    thresholds = {"accuracy": {"threshold": 0.3, "min_absolute_change": 0.0}}

    report = evaluate(
        model_name, candidate, data=iris, target="target", thresholds=thresholds, log=False
    )

    assert report.champion_version == champion
    assert report.champion_run_id == classifiers["good"]  # the champion's own run, for binding
    assert report.champion_metrics is not None
    assert report.champion_metrics["accuracy"] > 0.9
    assert report.passed is False
    assert report.beats_champion is False
    (failure,) = report.failures
    assert failure.metric == "accuracy"
    assert failure.champion == report.champion_metrics["accuracy"]
    assert failure.reasons[0] == "accuracy 0.3333 >= threshold 0.3"
    champ = f"{report.champion_metrics['accuracy']:.4g}"
    assert failure.reasons[1] == (
        f"accuracy 0.3333 < champion {champ} + min_absolute_change 0 = {champ}"
    )
    assert "FAIL accuracy: " in str(report)
    assert not any("only absolute" in n for n in report.notes)


def test_strong_candidate_beats_the_champion_on_the_primary_metric(
    iris: pd.DataFrame, classifiers: dict[str, str], model_name: str
) -> None:
    champion = register(classifiers["weak"], model_name)
    set_production(model_name, champion)
    candidate = register(classifiers["good"], model_name)

    report = evaluate(model_name, candidate, data=iris, target="target", log=False)

    assert report.verdicts == ()
    assert report.passed is True
    assert report.beats_champion is True
    assert any("primary metric (accuracy)" in n for n in report.notes)
    delta = report.candidate_metrics["accuracy"] - report.champion_metrics["accuracy"]
    assert delta > 0.5
    assert f"{delta:.4g}" in report._repr_html_()


def test_min_relative_change_is_a_fraction_of_the_champion_value(
    regression_data: pd.DataFrame, regressors: dict[str, Any], model_name: str
) -> None:
    champion = register(regressors["mean"], model_name)
    set_production(model_name, champion)
    candidate = register(regressors["linear"], model_name)
    baseline = evaluate(model_name, candidate, data=regression_data, target="y", log=False)
    cand, champ = baseline.candidate_metrics["rmse"], baseline.champion_metrics["rmse"]
    improvement = (champ - cand) / abs(champ)  # lower rmse is better
    assert 0.2 < improvement < 0.8

    below = evaluate(
        model_name,
        candidate,
        data=regression_data,
        target="y",
        log=False,
        thresholds={"rmse": {"min_relative_change": round(improvement - 0.01, 4)}},
    )
    above = evaluate(
        model_name,
        candidate,
        data=regression_data,
        target="y",
        log=False,
        thresholds={"rmse": {"min_relative_change": round(improvement + 0.01, 4)}},
    )

    assert below.passed is True
    assert below.beats_champion is True
    assert above.passed is False
    assert above.beats_champion is True  # better than the champion, just not by enough
    reason = above.failures[0].reasons[0]
    expected = f"rmse {cand:.4g} improves on champion {champ:.4g} by +{improvement:.2%}"
    assert reason.startswith(expected)
    assert reason.endswith(f"< min_relative_change {improvement + 0.01:.2%}")


def test_regression_metrics_match_scikit_learn(
    regression_data: pd.DataFrame, regressors: dict[str, Any], model_name: str
) -> None:
    from sklearn import metrics

    version = register(regressors["linear"], model_name)
    y = regression_data["y"]
    pred = regressors["estimator"].predict(regression_data.drop(columns=["y"]))

    report = evaluate(
        model_name,
        version,
        data=regression_data,
        target="y",
        thresholds={"rmse": {"threshold": 1.5}, "r2": {"threshold": 0.5}},
        log=False,
    )

    assert report.task == "regression"
    assert report.candidate_metrics == pytest.approx(
        {
            "rmse": metrics.root_mean_squared_error(y, pred),
            "mae": metrics.mean_absolute_error(y, pred),
            "r2": metrics.r2_score(y, pred),
        }
    )
    assert report.passed is True
    assert report.verdicts[0].reasons[0].startswith("rmse ")
    assert "<= threshold 1.5" in report.verdicts[0].reasons[0]


def test_classification_metrics_match_scikit_learn(
    iris: pd.DataFrame, classifiers: dict[str, str], model_name: str
) -> None:
    import mlflow
    from sklearn import metrics

    version = register(classifiers["good"], model_name)
    estimator = mlflow.sklearn.load_model(f"models:/{model_name}/{version}")
    x, y = iris.drop(columns=["target"]), iris["target"]
    pred = estimator.predict(x)

    report = evaluate(model_name, version, data=x.assign(target=y), target="target", log=False)

    assert report.candidate_metrics == pytest.approx(
        {
            "accuracy": metrics.accuracy_score(y, pred),
            "f1_macro": metrics.f1_score(y, pred, average="macro"),
            "precision_macro": metrics.precision_score(y, pred, average="macro"),
            "recall_macro": metrics.recall_score(y, pred, average="macro"),
            "roc_auc_ovr": metrics.roc_auc_score(y, estimator.predict_proba(x), multi_class="ovr"),
        }
    )


def test_a_champion_without_the_thresholded_metric_fails_the_comparison(
    iris: pd.DataFrame, classifiers: dict[str, str], model_name: str
) -> None:
    from sklearn.svm import LinearSVC

    x, y = iris.drop(columns=["target"]), iris["target"]
    champion = register(log_model(LinearSVC().fit(x, y)), model_name)  # no predict_proba
    set_production(model_name, champion)
    candidate = register(classifiers["good"], model_name)

    report = evaluate(
        model_name,
        candidate,
        data=iris,
        target="target",
        log=False,
        thresholds={"roc_auc_ovr": {"min_absolute_change": 0.0}},
    )

    assert "roc_auc_ovr" not in report.champion_metrics
    assert report.failures[0].reasons == (
        "min_absolute_change failed: the champion has no roc_auc_ovr to compare with",
    )
    assert report.passed is False


def test_classification_metrics_and_contract_shape(
    iris: pd.DataFrame, classifiers: dict[str, str], model_name: str
) -> None:
    version = register(classifiers["good"], model_name)

    report = evaluate(model_name, version, data=iris, target="target", log=False)
    body = report.to_dict()

    assert set(body) == CONTRACT_KEYS
    assert body["label"] == "target"
    assert set(body["metrics"]["candidate"]) == {
        "accuracy",
        "f1_macro",
        "precision_macro",
        "recall_macro",
        "roc_auc_ovr",
    }
    assert body["metrics"]["champion"] is None
    assert body["rows"] == 150
    assert body["dataset"] is None
    assert json.loads(json.dumps(body)) == body
    assert EvaluationReport.from_dict(body) == report
    assert body["champion_alias"] == "production"


# --- logging ----------------------------------------------------------------------------
def test_log_writes_the_report_and_metrics_to_the_candidate_run(
    iris: pd.DataFrame, model_name: str, mlflow_home: Path
) -> None:
    import mlflow
    from sklearn.linear_model import LogisticRegression

    x, y = iris.drop(columns=["target"]), iris["target"]
    run_id = log_model(LogisticRegression(C=0.05, max_iter=500).fit(x, y))
    version = register(run_id, model_name)

    report = evaluate(model_name, version, data=iris, target="target")

    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.metrics["eval.accuracy"] == pytest.approx(report.candidate_metrics["accuracy"])
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="mlops/evaluation/report.json"
    )
    assert json.loads(Path(local).read_text()) == report.to_dict()


def test_log_also_writes_to_the_active_mlops_run(
    iris: pd.DataFrame, classifiers: dict[str, str], model_name: str
) -> None:
    import mlflow

    import mlops

    version = register(classifiers["weak"], model_name)
    with mlops.start_run("evaluation") as run:
        report = evaluate(model_name, version, data=iris, target="target")

    metrics = mlflow.MlflowClient().get_run(run.run_id).data.metrics
    assert metrics["eval.accuracy"] == pytest.approx(report.candidate_metrics["accuracy"])


# --- data pinned by DVC -----------------------------------------------------------------
def test_dataset_version_is_read_at_its_rev_and_named_in_the_report(
    dvc_repo: Any, iris: pd.DataFrame, classifiers: dict[str, str], model_name: str
) -> None:
    import mlops

    (dvc_repo.root / "data").mkdir()
    iris.to_csv(dvc_repo.root / "data" / "eval.csv", index=False)
    dvc_repo.dvc("add", "data/eval.csv")
    dvc_repo.commit("eval data")
    ds = mlops.data.version("data/eval.csv")
    iris.head(10).to_csv(dvc_repo.root / "data" / "eval.csv", index=False)  # later edit
    version = register(classifiers["good"], model_name)

    report = evaluate(model_name, version, data=ds, target="target", log=False)

    assert report.rows == 150
    assert report.dataset == ds.to_dict()
    assert report.to_dict()["dataset"]["md5"] == ds.md5


# --- errors -----------------------------------------------------------------------------
def test_unknown_target_column_is_named(
    iris: pd.DataFrame, classifiers: dict[str, str], model_name: str
) -> None:
    version = register(classifiers["good"], model_name)
    with pytest.raises(EvaluationError, match=r"Target column 'label' is not in the evaluation"):
        evaluate(model_name, version, data=iris, target="label", log=False)


def test_threshold_on_a_metric_not_computed_is_refused(
    iris: pd.DataFrame, classifiers: dict[str, str], model_name: str
) -> None:
    version = register(classifiers["good"], model_name)
    with pytest.raises(EvaluationError, match=r"metric\(s\) \['rmse'\] that this evaluation"):
        evaluate(
            model_name,
            version,
            data=iris,
            target="target",
            thresholds={"rmse": {"threshold": 1.0}},
            log=False,
        )


def test_unknown_version_raises_model_version_not_found(
    iris: pd.DataFrame, classifiers: dict[str, str], model_name: str
) -> None:
    register(classifiers["good"], model_name)
    with pytest.raises(ModelVersionNotFound, match=rf"'{model_name}' has no version 9"):
        evaluate(model_name, 9, data=iris, target="target", log=False)


def test_a_python_threshold_takes_the_metric_direction_and_hints_in_python_terms(
    iris: pd.DataFrame,
) -> None:
    """``rmse`` with a bare threshold is lower-is-better; a contradiction names the argument."""
    from mlops.evaluation._metrics import _coerce_thresholds

    rules = _coerce_thresholds(
        {"rmse": MetricThreshold(threshold=70), "lift": {"threshold": 1, "greater_is_better": True}}
    )
    assert rules["rmse"].greater_is_better is False
    with pytest.raises(
        EvaluationError, match=r"thresholds\['rmse'\] says greater_is_better=True"
    ) as err:
        _coerce_thresholds({"rmse": MetricThreshold(threshold=70, greater_is_better=True)})
    assert "MetricThreshold(..., greater_is_better=False)" in err.value.hint
    assert "policy" not in err.value.hint
    with pytest.raises(EvaluationError, match=r"the direction of 'lift' is not known"):
        _coerce_thresholds({"lift": MetricThreshold(threshold=1)})


@pytest.mark.parametrize(
    ("metric", "options", "message"),
    [
        ("rmse", {"threshold": 1.0, "greater_is_better": True}, "lower rmse is better"),
        ("accuracy", {"min_relative_change": 1.5}, "must be between 0 and 1; got 1.5"),
        ("accuracy", {"min_absolute_change": -0.1}, "min_absolute_change must be >= 0"),
        ("accuracy", {"greater_is_better": True}, "needs at least one of threshold"),
        ("accuracy", {"treshold": 0.8}, r"Unknown threshold option\(s\) \['treshold'\]"),
        ("accuracy", {"threshold": "high"}, "threshold must be a number; got 'high'"),
    ],
)
def test_bad_thresholds_are_refused_before_any_work(
    iris: pd.DataFrame, metric: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(EvaluationError, match=message):
        evaluate(
            "never-registered",
            1,
            data=iris,
            target="target",
            thresholds={metric: options},
            log=False,
        )


def test_report_renders_as_text_and_html() -> None:
    report = EvaluationReport(
        model="churn",
        candidate_version=2,
        champion_alias="production",
        champion_version=1,
        task="classification",
        dataset=None,
        rows=10,
        candidate_metrics={"accuracy": 0.7},
        champion_metrics={"accuracy": 0.9},
        verdicts=(),
        beats_champion=False,
        passed=True,
        notes=("a <note>",),
    )
    text = str(report)
    assert "Evaluation of churn v2 (classification) vs production = v1: PASS" in text
    assert "beats champion: no" in text
    html = report._repr_html_()
    assert "a &lt;note&gt;" in html
    assert "-0.2" in html
