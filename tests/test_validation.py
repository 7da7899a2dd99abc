"""mlops.validation against real Great Expectations Core 1.x, MLflow and DVC."""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from mlops.errors import ConfigError, DataError, DataValidationFailed, NotFoundError
from mlops.validation import (
    Suite,
    SuiteError,
    SuiteNotFound,
    ValidationReport,
    load_suite,
    standalone_html,
    validate,
)

ROOT = Path(__file__).resolve().parents[1]
IRIS_SUITE = ROOT / "suites" / "iris_train.yaml"
REPORT_KEYS = {"suite", "success", "statistics", "results", "dataset", "rows", "digest"}
RESULT_KEYS = {"type", "column", "kwargs", "success", "observed"}


@pytest.fixture(scope="module")
def iris() -> pd.DataFrame:
    from sklearn.datasets import load_iris

    return load_iris(as_frame=True).frame


@pytest.fixture(scope="module")
def suite() -> Suite:
    return Suite.from_yaml(IRIS_SUITE)


def _visible_text(page: str) -> str:
    page = re.sub(r"<(style|script).*?</\1>", " ", page, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def _broken(iris: pd.DataFrame) -> pd.DataFrame:
    bad = iris.copy()
    bad.loc[3, "target"] = 7
    bad.loc[5, "petal width (cm)"] = None
    return bad


# --- passing and failing suites ---------------------------------------------------------
def test_passing_suite_reports_every_expectation(iris, suite):
    report = validate(iris, suite, log=False)

    assert isinstance(report, ValidationReport)
    assert report.success is True
    assert report.rows == 150
    assert report.statistics == {
        "evaluated": 12,
        "successful": 12,
        "unsuccessful": 0,
        "success_percent": 100.0,
    }
    assert [r.type for r in report.results] == [e["type"] for e in suite.expectations]
    assert report.failures == ()
    assert report.dataset is None
    body = report.to_dict()
    assert set(body) == REPORT_KEYS
    assert all(set(r) == RESULT_KEYS for r in body["results"])
    assert json.loads(json.dumps(body, allow_nan=False)) == body
    assert len(body["digest"]) == 64 and int(body["digest"], 16) >= 0


def test_failing_suite_is_data_with_results_on_the_right_expectation(iris, suite):
    report = validate(_broken(iris), suite, log=False)

    assert report.success is False
    assert report.statistics["unsuccessful"] == 2
    assert report.statistics["success_percent"] == pytest.approx(100 * 10 / 12)
    failed = {(r.type, r.column) for r in report.failures}
    assert failed == {
        ("expect_column_values_to_not_be_null", "petal width (cm)"),
        ("expect_column_values_to_be_in_set", "target"),
    }
    in_set = next(r for r in report.failures if r.column == "target")
    assert in_set.observed["unexpected_count"] == 1
    assert in_set.observed["partial_unexpected_list"] == [7]
    assert in_set.kwargs == {"column": "target", "value_set": [0, 1, 2]}


def test_raise_on_failure_raises_with_the_report(iris, suite):
    with pytest.raises(
        DataValidationFailed,
        match=r"suite 'iris_train' on in-memory DataFrame: 2 of 12 expectations failed "
        r"\(expect_column_values_to_not_be_null\[petal width \(cm\)\], "
        r"expect_column_values_to_be_in_set\[target\]\)",
    ) as info:
        validate(_broken(iris), suite, raise_on_failure=True, log=False)

    assert isinstance(info.value.report, ValidationReport)
    assert info.value.report.success is False
    assert info.value.code == "data_validation_failed"
    assert validate(iris, suite, raise_on_failure=True, log=False).success is True


def test_missing_column_is_a_failed_expectation_naming_the_column(iris):
    s = Suite("cols", [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}}])
    report = validate(iris, s, log=False)

    assert report.success is False
    assert 'The column "x" in BatchData does not exist' in report.results[0].observed["exception"]
    assert "error: " in str(report)


def test_data_of_another_type_is_refused(suite):
    with pytest.raises(DataError, match=r"needs a pandas DataFrame or a DatasetVersion, got list"):
        validate([{"target": 1}], suite, log=False)


# --- suites from code and YAML ------------------------------------------------------------
def test_yaml_suite_and_lookup_by_bare_name(tmp_path, monkeypatch, iris):
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "small.yaml").write_text(
        "expectations:\n"
        "  - type: expect_table_row_count_to_be_between\n"
        "    kwargs: {min_value: 100, max_value: 200}\n"
        "  - type: expect_column_max_to_be_between\n"
        "    kwargs: {column: target, min_value: 2, max_value: 2}\n"
    )
    monkeypatch.chdir(tmp_path)

    by_name = load_suite("small")
    assert by_name.name == "small"  # defaults to the file stem
    assert by_name == Suite.from_yaml(tmp_path / "suites" / "small.yaml")
    assert load_suite(IRIS_SUITE).name == "iris_train"
    report = validate(iris, "small", log=False)
    assert report.success is True
    assert report.results[1].observed["observed_value"] == 2
    with pytest.raises(
        SuiteNotFound, match=r"No suite named 'nope': looked for .*suites/nope\.yaml"
    ):
        load_suite("nope")


def test_bare_name_is_found_under_the_dvc_root(tmp_path, monkeypatch):
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "x.yml").write_text(
        "name: x\nexpectations: [{type: expect_column_to_exist, kwargs: {column: a}}]\n"
    )
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    monkeypatch.setenv("MLOPS_DVC_ROOT", str(tmp_path))

    assert load_suite("x").expectations == (
        {"type": "expect_column_to_exist", "kwargs": {"column": "a"}},
    )


def test_unknown_expectation_type_names_it_and_suggests(iris):
    s = Suite("typo", [{"type": "expect_column_values_to_be_betwen", "kwargs": {"column": "a"}}])

    with pytest.raises(
        SuiteError,
        match=r"Unknown expectation type 'expect_column_values_to_be_betwen'.*"
        r"Did you mean 'expect_column_values_to_be_between'",
    ) as info:
        validate(iris, s, log=False)
    assert info.value.code == "suite_error"
    assert isinstance(info.value, ConfigError)


def test_bad_kwargs_name_the_expectation(iris):
    s = Suite(
        "bad",
        [
            {"type": "expect_column_to_exist", "kwargs": {"column": "target"}},
            {"type": "expect_column_values_to_be_between", "kwargs": {"colum": "target"}},
        ],
    )
    with pytest.raises(
        SuiteError,
        match=r"Suite 'bad', expectation #1 \(expect_column_values_to_be_between\): invalid "
        r"kwargs \{'colum': 'target'\}.*colum\s+extra fields not permitted",
    ):
        validate(iris, s, log=False)


@pytest.mark.parametrize(
    ("name", "expectations", "message"),
    [
        ("bad name!", [{"type": "expect_column_to_exist"}], r"Suite name 'bad name!' is not valid"),
        ("empty", [], r"Suite 'empty' has no expectations"),
        ("s", [{"kwargs": {}}], r"expectation #0: 'type' must be an expectation name"),
        ("s", [{"type": "x", "kwargs": {}}], r"'type' must be an expectation name .* got 'x'"),
        (
            "s",
            [{"type": "expect_a", "args": {}}],
            r"expectation #0 has unknown key\(s\) \['args'\]",
        ),
        ("s", [{"type": "expect_a", "kwargs": [1]}], r"\(expect_a\): 'kwargs' must be a mapping"),
        ("s", "expect_a", r"expectations must be a list of mappings, got str"),
    ],
)
def test_suite_structure_is_checked_on_construction(name, expectations, message):
    with pytest.raises(SuiteError, match=message):
        Suite(name, expectations)


def test_broken_yaml_file_is_a_suite_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("expectations: [\n")
    with pytest.raises(SuiteError, match=r"Cannot read suite file '.*broken\.yaml'"):
        Suite.from_yaml(path)
    path.write_text("name: s\nexpectation: []\n")
    with pytest.raises(SuiteError, match=r"Suite 's' has unknown key\(s\) \['expectation'\]"):
        Suite.from_yaml(path)
    with pytest.raises(NotFoundError, match=r"Suite file '.*missing\.yaml' does not exist"):
        Suite.from_yaml(tmp_path / "missing.yaml")


def test_suite_is_immutable_and_copies_its_input():
    specs = [{"type": "expect_column_to_exist", "kwargs": {"column": "a"}}]
    s = Suite("s", specs)
    specs[0]["kwargs"]["column"] = "b"

    assert s.expectations[0]["kwargs"] == {"column": "a"}
    with pytest.raises(AttributeError, match="cannot assign to field 'name'"):
        s.name = "t"  # type: ignore[misc]


# --- one shared GX context: reruns, threads, digests ----------------------------------------
def test_same_validation_twice_in_one_process_gives_the_same_report(iris, suite):
    first = validate(iris, suite, log=False)
    second = validate(iris, suite, log=False)

    assert first.to_dict() == second.to_dict()
    assert validate(_broken(iris), suite, log=False).success is False
    assert validate(iris, suite, log=False).digest == first.digest

    from mlops.validation import _gx

    context = _gx._state().context  # one context, one datasource, one asset, reused
    assert _gx._state().context is context
    assert [d.name for d in context.data_sources.all().values()] == ["mlops"]
    assert [a.name for a in context.data_sources.get("mlops").assets] == ["frame"]


def test_two_threads_validate_concurrently(iris, suite):
    good, bad = iris, _broken(iris)
    expected = {True: validate(good, suite, log=False), False: validate(bad, suite, log=False)}

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda df: validate(df, suite, log=False), [good, bad] * 4))

    assert [r.success for r in reports] == [True, False] * 4
    for report in reports:
        assert report.to_dict() == expected[report.success].to_dict()


def test_the_shared_context_does_not_keep_the_validated_frame_alive():
    frame = pd.DataFrame({"a": range(1000)})
    ref = weakref.ref(frame)
    s = Suite("small", [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}])

    report = validate(frame, s, log=False)
    del frame
    gc.collect()

    assert report.success is True
    assert ref() is None


def test_a_users_own_gx_context_is_left_alone(iris, suite):
    import great_expectations as gx
    from great_expectations.data_context import project_manager

    mine = gx.get_context(mode="ephemeral")
    mine.data_sources.add_pandas("mlops").add_dataframe_asset("frame")

    assert validate(iris, suite, log=False).success is True
    assert project_manager.get_current_project() is mine
    assert [a.name for a in mine.data_sources.get("mlops").assets] == ["frame"]
    assert validate(_broken(iris), suite, log=False).success is False


def test_digest_changes_with_data_and_suite(iris, suite):
    base = validate(iris, suite, log=False).digest

    changed = iris.copy()
    changed.loc[0, "sepal length (cm)"] += 0.1  # still passes, different data
    assert validate(changed, suite, log=False).digest != base

    stricter = Suite.from_dict(suite.to_dict())
    specs = [dict(e) for e in stricter.expectations]
    specs[1] = {"type": specs[1]["type"], "kwargs": {"min_value": 30, "max_value": 99_999}}
    assert validate(iris, Suite("iris_train", specs), log=False).digest != base

    renamed = iris.rename(columns={"target": "label"})
    s = Suite(
        "rows", [{"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}]
    )
    assert validate(renamed, s, log=False).digest != validate(iris, s, log=False).digest
    assert validate(iris.copy(), suite, log=False).digest == base


# --- rendering ----------------------------------------------------------------------------
def test_text_and_html_rendering(iris, suite):
    report = validate(_broken(iris), suite, log=False)

    text = str(report)
    assert text.startswith("Validation FAILED: suite 'iris_train', 10/12 expectations (83.3%)")
    assert (
        "FAIL  expect_column_values_to_be_in_set [target]  1 unexpected (0.667%), e.g. [7]" in text
    )
    page = report._repr_html_()
    assert page.count("<tr>") == 13  # header + 12 expectations
    assert page.count(">FAIL</span>") == 3  # the report badge + 2 failures
    assert "petal width (cm)" in page and "<script" not in page


def test_report_round_trips_through_its_dict(iris, suite):
    report = validate(_broken(iris), suite, log=False)

    assert ValidationReport.from_dict(report.to_dict()) == report
    with pytest.raises(DataError, match=r"Not a ValidationReport dict: KeyError\('digest'\)"):
        ValidationReport.from_dict({k: v for k, v in report.to_dict().items() if k != "digest"})


def test_standalone_page_is_self_contained(iris, suite):
    page = standalone_html(validate(_broken(iris), suite, log=False))

    assert page.startswith("<!DOCTYPE html>")
    assert "http" not in page and "<script" not in page
    assert "expect_column_values_to_be_in_set" in _visible_text(page)


# --- MLflow -------------------------------------------------------------------------------
def test_report_and_data_docs_are_logged_to_the_active_mlflow_run(mlflow_home, iris, suite):
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLOPS_TRACKING_URI"])
    name = f"validation-{uuid.uuid4().hex[:8]}"
    exp = mlflow.create_experiment(name, artifact_location=str(mlflow_home / "artifacts" / name))
    with mlflow.start_run(experiment_id=exp) as run:
        report = validate(iris, suite)
        validate(_broken(iris), Suite("broken", list(suite.expectations)))

    client = mlflow.MlflowClient()
    files = {f.path for f in client.list_artifacts(run.info.run_id, "mlops/validation")}
    assert files == {
        "mlops/validation/iris_train.json",
        "mlops/validation/iris_train.html",
        "mlops/validation/broken.json",
        "mlops/validation/broken.html",
    }
    logged = json.loads(
        mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/mlops/validation/iris_train.json")
    )
    assert logged == report.to_dict()
    docs = _visible_text(
        mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/mlops/validation/broken.html")
    )
    assert "Expectation Suite: broken Data asset: None Status: Failed" in docs
    assert "values must belong to this set: 0 1 2 . 1 unexpected values found." in docs
    data = client.get_run(run.info.run_id).data
    assert data.metrics["validation.iris_train.success_percent"] == 100.0
    assert data.metrics["validation.broken.success_percent"] == pytest.approx(100 * 10 / 12)
    assert data.tags["mlops.validation.iris_train.digest"] == report.digest


def test_validation_inside_mlops_start_run_logs_to_that_run(mlflow_home, iris, suite):
    import mlflow

    import mlops

    with mlops.start_run(f"validate-{uuid.uuid4().hex[:8]}") as run:
        report = validate(iris, suite)

    client = mlflow.MlflowClient(tracking_uri=run.tracking_uri)
    data = client.get_run(run.run_id).data
    assert data.metrics == {"validation.iris_train.success_percent": 100.0}
    assert data.tags["mlops.validation.iris_train.digest"] == report.digest
    logged = client.download_artifacts(run.run_id, "mlops/validation/iris_train.json")
    assert json.loads(Path(logged).read_text()) == report.to_dict()


def test_data_docs_fall_back_to_our_page_when_gx_cannot_render(
    mlflow_home, iris, suite, monkeypatch, caplog
):
    import mlflow

    from mlops.validation import _gx

    def broken_renderer(result):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(_gx, "render_data_docs", broken_renderer)
    mlflow.set_tracking_uri(os.environ["MLOPS_TRACKING_URI"])
    name = f"validation-{uuid.uuid4().hex[:8]}"
    exp = mlflow.create_experiment(name, artifact_location=str(mlflow_home / "artifacts" / name))
    with mlflow.start_run(experiment_id=exp) as run:
        report = validate(iris, suite)

    page = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/mlops/validation/iris_train.html")
    assert page == standalone_html(report)
    expected = "could not render Data Docs for suite 'iris_train' (RuntimeError: renderer exploded)"
    assert expected in caplog.text


def test_no_run_or_log_false_logs_nothing(mlflow_home, iris, suite):
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLOPS_TRACKING_URI"])
    assert mlflow.active_run() is None
    assert validate(iris, suite).success is True  # no run: nothing to log, no error
    name = f"validation-{uuid.uuid4().hex[:8]}"
    exp = mlflow.create_experiment(name, artifact_location=str(mlflow_home / "artifacts" / name))
    with mlflow.start_run(experiment_id=exp) as run:
        validate(iris, suite, log=False)
    assert mlflow.MlflowClient().list_artifacts(run.info.run_id) == []
    assert mlflow.MlflowClient().get_run(run.info.run_id).data.metrics == {}


# --- DVC ----------------------------------------------------------------------------------
def test_dataset_version_is_validated_at_its_pinned_rev(dvc_repo, iris, suite):
    import mlops

    data = dvc_repo.root / "data" / "train.csv"
    data.parent.mkdir()
    iris.to_csv(data, index=False)
    dvc_repo.dvc("add", "-q", "data/train.csv")
    good_rev = dvc_repo.commit("good data")
    _broken(iris).to_csv(data, index=False)
    dvc_repo.dvc("add", "-q", "data/train.csv")
    dvc_repo.commit("broken data")

    pinned = mlops.data.version("data/train.csv", rev=good_rev)
    report = validate(pinned, suite, log=False)
    assert report.success is True
    assert report.rows == 150
    assert report.dataset == pinned
    assert report.to_dict()["dataset"] == pinned.to_dict()
    assert f"data/train.csv@{good_rev[:10]}" in str(report)
    assert ValidationReport.from_dict(report.to_dict()) == report

    copy = shutil.copytree(dvc_repo.root, dvc_repo.root.parent / "copy", symlinks=True)
    elsewhere = mlops.data.version("data/train.csv", repo=copy, rev=good_rev)
    assert elsewhere.repo != pinned.repo
    assert validate(elsewhere, suite, log=False).digest == report.digest  # same data, same digest

    head = validate("data/train.csv", suite, log=False)  # a path: the version at HEAD
    assert head.success is False
    assert head.dataset.rev != good_rev
    assert head.digest != report.digest
    with pytest.raises(DataValidationFailed, match=r"on data/train\.csv@[0-9a-f]{10} \(md5 "):
        validate(head.dataset, suite, raise_on_failure=True, log=False)


# --- process-level behaviour ----------------------------------------------------------------
def test_import_is_lazy_and_gx_runs_quietly_without_analytics(tmp_path):
    script = (
        "import sys, pandas as pd\n"
        "import mlops.validation as v\n"
        "assert 'great_expectations' not in sys.modules\n"
        "s = v.Suite('s', [{'type': 'expect_column_to_exist', 'kwargs': {'column': 'a'}}])\n"
        "assert v.validate(pd.DataFrame({'a': [1]}), s, log=False).success\n"
        "from mlops.validation import _gx\n"
        "import os\n"
        "print(os.environ['GX_ANALYTICS_ENABLED'], _gx._state().context.config.analytics_enabled)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GX_")}
    res = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["false", "False"]
    assert "Calculating Metrics" not in res.stderr
