"""mlops.tracking on a real MLflow SQLite store and a real DVC repository."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest

import mlops
from mlops import tracking
from mlops.errors import ConfigError, TrackingError


@pytest.fixture
def train_ds(dvc_repo, mlflow_home):
    (dvc_repo.root / "data").mkdir()
    (dvc_repo.root / "data" / "train.csv").write_text("x,y\n1,2\n3,4\n")
    dvc_repo.dvc("add", "-q", "data/train.csv")
    dvc_repo.commit("track train")
    return mlops.data.version("data/train.csv")


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def test_run_records_datasets_as_inputs_and_tags(train_ds, dvc_repo):
    with mlops.start_run("fit", datasets=[train_ds], params={"C": 0.5}, tags={"team": "a"}) as run:
        assert mlops.active_run() == run
        assert run.datasets == (train_ds,)
    assert mlops.active_run() is None
    got = _client().get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "fit"
    assert got.data.params == {"C": "0.5"}
    tags = got.data.tags
    assert tags["team"] == "a"
    assert tags["mlops.dataset.count"] == "1"
    assert tags["mlops.dataset.0.path"] == "data/train.csv"
    assert tags["mlops.dataset.0.md5"] == train_ds.md5
    assert tags["mlops.dataset.0.rev"] == train_ds.rev == dvc_repo.git("rev-parse", "HEAD")
    assert tags["mlops.dataset.0.remote"] == str(dvc_repo.remote)
    assert tags["mlops.git_commit"] == dvc_repo.git("rev-parse", "HEAD")
    (inp,) = got.inputs.dataset_inputs
    assert inp.dataset.digest == train_ds.md5
    assert inp.dataset.name == "data/train.csv"
    assert inp.dataset.source_type == "dvc"
    source = json.loads(inp.dataset.source)
    assert source["uri"] == f"data/train.csv@{train_ds.rev}"
    assert source["remote"] == str(dvc_repo.remote)
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"
    assert tracking._datasets_from_tags(tags) == (train_ds,)


def test_uncommitted_workspace_dataset_reads_back_as_uncommitted(train_ds, dvc_repo):
    (dvc_repo.root / "data" / "train.csv").write_text("x,y\n5,6\n")
    dvc_repo.dvc("add", "-q", "data/train.csv")  # recorded in the workspace, not committed
    ds = mlops.data.version("data/train.csv", workspace=True)
    assert not ds.committed and ds.md5 != train_ds.md5
    with mlops.start_run(datasets=[ds, train_ds]) as run:
        pass
    tags = _client().get_run(run.run_id).data.tags
    assert tags["mlops.dataset.0.committed"] == "False"
    assert "mlops.dataset.1.committed" not in tags
    assert tracking._datasets_from_tags(tags) == (ds, train_ds)


def test_run_without_datasets_tags_the_code_commit(dvc_repo, mlflow_home):
    with mlops.start_run() as run:
        pass
    tags = _client().get_run(run.run_id).data.tags
    assert tags["mlops.dataset.count"] == "0"
    assert tags["mlops.git_commit"] == dvc_repo.git("rev-parse", "HEAD")


def test_run_tags_a_dirty_tree_the_dvc_experiment_and_the_model_class(
    train_ds, dvc_repo, monkeypatch
):
    from sklearn.svm import SVC

    with mlops.start_run(datasets=[train_ds]) as clean:
        assert tracking.log_model_class(SVC()) == "sklearn.svm._classes.SVC"
    (dvc_repo.root / "params.yaml").write_text("C: 1\n")
    dvc_repo.commit("params")
    (dvc_repo.root / "params.yaml").write_text("C: 2\n")  # what `dvc exp run -S` does
    monkeypatch.setenv("DVC_EXP_NAME", "lusty-bass")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", dvc_repo.git("rev-parse", "HEAD"))
    with mlops.start_run(datasets=[train_ds]) as exp:
        pass
    before = _client().get_run(clean.run_id).data.tags
    assert before["mlops.git_dirty"] == "false"
    assert before["mlops.model.class"] == "sklearn.svm._classes.SVC"
    assert "mlops.dvc.exp_name" not in before
    after = _client().get_run(exp.run_id).data.tags
    assert after["mlops.git_dirty"] == "true"
    assert after["mlops.dvc.exp_name"] == "lusty-bass"
    assert after["mlops.dvc.exp_baseline"] == dvc_repo.git("rev-parse", "HEAD")
    assert "mlops.model.class" not in after


def test_model_class_needs_an_active_run():
    with pytest.raises(TrackingError, match=r"log_model_class\(\) needs an active run"):
        tracking.log_model_class(object())


def test_failed_block_marks_run_failed_and_clears_active(train_ds):
    with pytest.raises(ZeroDivisionError), mlops.start_run(datasets=[train_ds]) as run:
        1 / 0  # noqa: B018
    assert mlops.active_run() is None
    assert _client().get_run(run.run_id).info.status == "FAILED"


def test_nested_runs_are_refused(train_ds):
    with mlops.start_run() as outer:
        with (
            pytest.raises(TrackingError, match=f"Run {outer.run_id} is already active"),
            mlops.start_run(),
        ):
            pass
        assert mlops.active_run() == outer


def test_active_run_is_per_thread(train_ds):
    seen: list[object] = []
    with mlops.start_run():
        t = threading.Thread(target=lambda: seen.append(mlops.active_run()))
        t.start()
        t.join()
    assert seen == [None]


def test_datasets_must_be_dataset_versions(mlflow_home):
    with (
        pytest.raises(ConfigError, match=r"takes DatasetVersion objects; got 'data/x\.csv'"),
        mlops.start_run(datasets=["data/x.csv"]),
    ):
        pass


def test_configure_creates_experiment_under_artifact_root(mlflow_home, monkeypatch):
    name = f"exp-{uuid.uuid4().hex[:8]}"
    with mlops.start_run(experiment=name) as run:
        pass
    exp = _client().get_experiment(run.experiment_id)
    assert exp.name == name
    assert exp.artifact_location == (Path(mlflow_home) / "artifacts" / name).resolve().as_uri()
    monkeypatch.setenv("MLOPS_EXPERIMENT", name)
    tracking.configure()
    with mlops.start_run() as again:
        pass
    assert again.experiment_id == run.experiment_id


def test_explicit_configure_sticks_until_reset(mlflow_home, tmp_path):
    import mlflow

    other = f"sqlite:///{tmp_path / 'other.db'}"
    try:
        tracking.configure(tracking_uri=other)
        assert mlflow.get_tracking_uri() == other
        with mlops.start_run() as run:
            pass
        assert run.tracking_uri == other
    finally:
        tracking.configure()
    assert mlflow.get_tracking_uri() == f"sqlite:///{mlflow_home / 'mlflow.db'}"


def test_run_repr(train_ds):
    with mlops.start_run(datasets=[train_ds]) as run:
        pass
    assert run.run_id in str(run) and "data/train.csv" in str(run)
    assert "<code>" in run._repr_html_()
    assert run.to_dict()["datasets"] == [train_ds.to_dict()]


def test_deleted_experiment_names_the_fix(mlflow_home):
    name = f"gone-{uuid.uuid4().hex[:8]}"
    with mlops.start_run(experiment=name) as run:
        pass
    _client().delete_experiment(run.experiment_id)
    with (
        pytest.raises(TrackingError, match=f"experiment '{name}' .* is deleted"),
        mlops.start_run(experiment=name),
    ):
        pass


def test_refused_params_fail_the_run_with_a_tracking_error(mlflow_home):
    with (
        pytest.raises(TrackingError, match="MLflow refused the datasets or params of run"),
        mlops.start_run(params={"bad name!": 1}),
    ):
        pass
    assert mlops.active_run() is None
