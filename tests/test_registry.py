"""mlops.registry on real MLflow (SQLite, and once over HTTP) with real DVC lineage."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

import mlops
from mlops import registry
from mlops.errors import AliasNotFound, ConfigError, ModelVersionNotFound
from tests.conftest import SKLEARN_REQUIREMENTS


def _dvc_says(repo, path: str, rev: str) -> str:
    """DVC's own md5 for ``path`` at ``rev``, asked through ``dvc ls``."""
    parent, _, name = path.rpartition("/")
    out = repo.dvc("ls", "--json", "--show-hash", str(repo.root), parent or ".", "--rev", rev)
    (entry,) = [e for e in json.loads(out) if e["path"] == name]
    return entry["md5"]


def test_lineage_names_the_exact_training_data(lineage_model):
    repo = lineage_model.repo
    lin = registry.lineage(lineage_model.name, lineage_model.version)
    assert lin.run_id == lineage_model.run_id
    (ds,) = lin.datasets
    assert ds.path == "data/iris.csv"
    assert ds.rev == repo.git("rev-parse", "HEAD")
    assert ds.md5 == _dvc_says(repo, "data/iris.csv", ds.rev)
    assert ds.remote == str(repo.remote)
    assert lin.git_commit == ds.rev
    assert lin.to_dict()["datasets"] == [ds.to_dict()]
    assert ds.md5 in str(lin) and ds.md5 in lin._repr_html_()
    assert len(mlops.data.read_dataframe(ds)) == 150


def test_lineage_falls_back_to_run_inputs(lineage_model, model_name):
    import mlflow
    from mlflow.tracking import MlflowClient
    from sklearn.dummy import DummyClassifier

    client = MlflowClient()
    df = mlops.data.read_dataframe(lineage_model.dataset)
    with mlops.start_run(datasets=[lineage_model.dataset]) as run:
        clf = DummyClassifier().fit(df.drop(columns=["target"]), df["target"])
        mlflow.sklearn.log_model(clf, name="model", pip_requirements=SKLEARN_REQUIREMENTS)
    for key in client.get_run(run.run_id).data.tags:
        if key.startswith("mlops.dataset."):
            client.delete_tag(run.run_id, key)
    mv = registry.register(run, f"{model_name}-inputs")
    assert registry.lineage(mv.name, mv.version).datasets == (lineage_model.dataset,)


def test_model_version_fields(lineage_model):
    mv = registry.get(lineage_model.name, lineage_model.version)
    assert (mv.name, mv.version, mv.run_id) == (lineage_model.name, 1, lineage_model.run_id)
    assert mv.source.startswith("models:/m-")
    local = Path(urlparse(mv.download_uri).path)
    assert (local / "MLmodel").is_file()
    assert mv.aliases == ()
    assert mv.uri == f"models:/{lineage_model.name}/1"
    assert json.loads(json.dumps(mv.to_dict()))["version"] == 1
    assert registry.get(lineage_model.name, "1") == mv


def test_register_accepts_run_id_and_model_uris(lineage_model):
    from mlflow.tracking import MlflowClient

    name = lineage_model.name
    v2 = registry.register(lineage_model.run_id, name, tags={"why": "rerun"})
    assert (v2.version, v2.run_id, v2.tags) == (2, lineage_model.run_id, {"why": "rerun"})
    (logged,) = MlflowClient().search_logged_models(
        experiment_ids=[MlflowClient().get_run(lineage_model.run_id).info.experiment_id],
        filter_string=f"source_run_id = '{lineage_model.run_id}'",
    )
    v3 = registry.register(f"models:/{logged.model_id}", name)
    assert (v3.version, v3.source) == (3, f"models:/{logged.model_id}")
    assert registry.lineage(name, 3).datasets == (lineage_model.dataset,)
    assert [mv.version for mv in registry.versions(name)] == [3, 2, 1]


def test_register_refuses_what_is_not_a_model(lineage_model):
    with pytest.raises(ModelVersionNotFound, match="logged no model named 'clf'"):
        registry.register(lineage_model.run_id, lineage_model.name, artifact_path="clf")
    with pytest.raises(ConfigError, match="got 'my model'"):
        registry.register("my model", lineage_model.name)
    with mlops.start_run() as empty:
        pass
    with pytest.raises(ModelVersionNotFound, match=f"Run {empty.run_id} logged no model"):
        registry.register(empty, lineage_model.name)


def test_unknown_model_or_version(lineage_model):
    missing = f"{lineage_model.name}-missing"
    with pytest.raises(ModelVersionNotFound, match="version 7"):
        registry.get(lineage_model.name, 7)
    with pytest.raises(ModelVersionNotFound, match="no version 'latest'"):
        registry.get(lineage_model.name, "latest")
    with pytest.raises(ModelVersionNotFound, match=missing):
        registry.get(missing, 1)
    with pytest.raises(ModelVersionNotFound, match=missing):
        registry.aliases(missing)


def test_aliases_set_move_resolve_delete(lineage_model):
    name = lineage_model.name
    registry.register(lineage_model.run_id, name)
    assert registry.get_alias(name, "champion") is None
    with pytest.raises(AliasNotFound, match=f"Model '{name}' has no alias 'champion'"):
        registry.resolve(f"{name}@champion")
    mv = registry.set_alias(name, "champion", 1)
    assert mv.aliases == ("champion",)
    registry.set_alias(name, "challenger", 2)
    assert registry.aliases(name) == {"challenger": 2, "champion": 1}
    registry.set_alias(name, "champion", 2)  # moves
    assert registry.aliases(name) == {"challenger": 2, "champion": 2}
    assert registry.resolve(f"{name}@champion").version == 2
    assert registry.resolve(f"models:/{name}@champion").aliases == ("challenger", "champion")
    assert registry.resolve(f"{name}/1").aliases == ()
    assert registry.resolve(f"models:/{name}/1").version == 1
    # search_model_versions drops aliases upstream; ours are read from the model
    assert {mv.version: mv.aliases for mv in registry.versions(name)} == {
        2: ("challenger", "champion"),
        1: (),
    }
    assert registry.delete_alias(name, "champion") is True
    assert registry.delete_alias(name, "champion") is False
    assert registry.aliases(name) == {"challenger": 2}
    with pytest.raises(ModelVersionNotFound, match="version 9"):
        registry.set_alias(name, "champion", 9)
    with pytest.raises(ConfigError, match="MLflow refused setting alias 'latest'"):
        registry.set_alias(name, "latest", 1)


def test_resolve_refuses_unreadable_refs(lineage_model):
    with pytest.raises(ConfigError, match="Cannot read a model version from 'nonsense'"):
        registry.resolve("nonsense")
    with pytest.raises(ConfigError, match="from 'm/one'"):
        registry.resolve("m/one")


def test_set_tag_and_load_model(lineage_model):
    name = lineage_model.name
    registry.set_tag(name, 1, "mlops.evidence.digest", "ab" * 32)
    assert registry.get(name, 1).tags == {"mlops.evidence.digest": "ab" * 32}
    model = registry.load_model(name, 1)
    df = mlops.data.read_dataframe(lineage_model.dataset)
    preds = model.predict(df.drop(columns=["target"]).head(5))
    assert len(preds) == 5
    with pytest.raises(ModelVersionNotFound, match="version 5"):
        registry.load_model(name, 5)


@pytest.mark.slow
def test_full_lineage_over_http(mlflow_server, dvc_repo, mlflow_home, model_name, monkeypatch):
    """The same flow against a real `mlflow server` (REST store, proxied artifacts)."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from tests.conftest import write_iris

    monkeypatch.setenv("MLOPS_TRACKING_URI", mlflow_server.url)
    monkeypatch.delenv("MLOPS_REGISTRY_URI", raising=False)
    write_iris(dvc_repo.root / "data" / "iris.csv")
    dvc_repo.dvc("add", "-q", "data/iris.csv")
    rev = dvc_repo.commit("track iris")
    dvc_repo.dvc("push", "-q")
    ds = mlops.data.version("data/iris.csv")
    with mlops.start_run("over-http", datasets=[ds]) as run:
        assert run.tracking_uri == mlflow_server.url
        df = mlops.data.read_dataframe(ds)
        clf = LogisticRegression(max_iter=500).fit(df.drop(columns=["target"]), df["target"])
        mlflow.sklearn.log_model(clf, name="model", pip_requirements=SKLEARN_REQUIREMENTS)
    mv = registry.register(run, model_name)
    registry.set_alias(model_name, "candidate", mv.version)
    lin = registry.lineage(model_name, registry.resolve(f"{model_name}@candidate").version)
    (got,) = lin.datasets
    assert (got.rev, got.md5) == (rev, _dvc_says(dvc_repo, "data/iris.csv", rev))
    assert lin.run_id == run.run_id
    assert mv.download_uri.startswith("mlflow-artifacts:")
    exp = mlflow.tracking.MlflowClient().get_experiment(run.experiment_id)
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    features = df.drop(columns=["target"]).head(3)
    assert len(registry.load_model(model_name, mv.version).predict(features)) == 3
