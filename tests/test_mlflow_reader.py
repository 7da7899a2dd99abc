"""The fast MLflow reader of ``mlops verify`` reads what the MLflow client reads, on a real
SQLite store and from a real ``mlflow server`` over HTTP.

Each store gets the same model: a run with a training dataset (tags and an MLflow input),
an evaluation input, an attestation-like artifact and recorded evidence, registered with
an alias and a tag. The reader and the client must agree on every read ``mlops.verify``
makes; what the reader cannot answer it leaves to MLflow (:class:`Unanswered`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import mlops
from mlops import evidence, registry
from mlops._mlflow_reader import MlflowReads, Unanswered, open_reader
from mlops._mlflow_reader._rest import _auth_headers, _RestReader
from mlops._mlflow_reader._sqlite import _SqliteReader
from mlops.data import DatasetVersion
from mlops.errors import AliasNotFound
from mlops.signatures import file_digest, files_digest, tree_digest
from mlops.tracking import configure
from tests import _evidence
from tests.conftest import SKLEARN_REQUIREMENTS

TRAIN = DatasetVersion(
    path="data/train.csv", md5="a" * 32, rev="b" * 40, remote="/srv/dvc", repo="/nowhere/repo"
)
HELD_OUT = DatasetVersion(
    path="data/test.csv", md5="c" * 32, rev="b" * 40, remote="/srv/dvc", repo="/nowhere/repo"
)
ATTESTATION = "mlops/attestations/" + "e" * 64 + ".json"


@dataclass(frozen=True)
class Logged:
    name: str
    version: int
    run_id: str
    digest: str


@pytest.fixture(params=["sqlite", "http"])
def store(request: pytest.FixtureRequest, mlflow_home: Path) -> Iterator[str]:
    """mlops pointed at the session's SQLite store, or at a real ``mlflow server``."""
    if request.param == "http":
        configure(tracking_uri=request.getfixturevalue("mlflow_server").url)
    try:
        yield request.param
    finally:
        configure()  # back to the session's SQLite store


def _log(name: str) -> Logged:
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlops.tracking import _dvc_source_class

    x, y = load_iris(return_X_y=True, as_frame=True)
    with mlops.start_run("reader", datasets=[TRAIN]) as run:
        model = LogisticRegression(max_iter=300).fit(x, y)
        mlflow.sklearn.log_model(model, name="model", pip_requirements=SKLEARN_REQUIREMENTS)
        held_out = MetaDataset(_dvc_source_class()(HELD_OUT), HELD_OUT.path, HELD_OUT.md5)
        mlflow.log_input(held_out, context="evaluation")  # not lineage: evaluation data
        mlflow.log_text('{"payload": "signed"}', ATTESTATION)
    version = registry.register(run, name).version
    registry.set_alias(name, "production", version)
    registry.set_tag(name, version, "team", "risk")
    bundle = _evidence.bundle(name, version, run.run_id, datasets=[TRAIN.to_dict()])
    digest = evidence.record(evidence.Evidence.from_dict(bundle))
    return Logged(name, version, run.run_id, digest)


@pytest.mark.slow
def test_the_fast_reader_reads_what_mlflow_reads(store: str, model_name: str) -> None:
    logged = _log(model_name)
    slow = MlflowReads()

    with open_reader() as fast:
        assert type(fast) is {"sqlite": _SqliteReader, "http": _RestReader}[store]
        mv = fast.resolve(model_name, "production")
        assert mv == slow.resolve(model_name, "production")
        assert (mv.version, mv.run_id, mv.aliases) == (
            logged.version,
            logged.run_id,
            ("production",),
        )
        assert mv.tags["team"] == "risk"
        assert mv.tags[evidence.DIGEST_TAG] == logged.digest
        for path in (ATTESTATION, f"mlops/evidence/{logged.digest}.json"):
            assert fast.artifact(mv.run_id, path) == slow.artifact(mv.run_id, path)
        assert fast.model_digest(mv) == slow.model_digest(mv)
        assert fast.evidence(mv, logged.digest) == slow.evidence(mv, logged.digest)
        assert fast.datasets(mv) == slow.datasets(mv) == (TRAIN,)


@pytest.mark.slow
def test_both_read_the_datasets_from_the_inputs_once_the_tags_are_gone(
    store: str, model_name: str
) -> None:
    logged = _log(model_name)
    client = registry._client()
    for key in client.get_run(logged.run_id).data.tags:
        if key.startswith("mlops.dataset."):
            client.delete_tag(logged.run_id, key)

    with open_reader() as fast:
        mv = fast.resolve(model_name, "production")
        assert fast.datasets(mv) == MlflowReads().datasets(mv) == (TRAIN,)


@pytest.mark.slow
def test_what_the_fast_reader_cannot_answer_is_left_to_mlflow(store: str, model_name: str) -> None:
    logged = _log(model_name)
    slow = MlflowReads()

    with open_reader() as fast:
        messages = []
        for reads in (fast, slow):
            with pytest.raises(AliasNotFound, match="has no alias 'staging'") as err:
                reads.resolve(model_name, "staging")
            messages.append(err.value.message)
        assert messages[0] == messages[1]
        with pytest.raises(Unanswered, match="no-such-model"):
            fast.resolve("no-such-model", "production")
        with pytest.raises(Unanswered, match=r"missing\.json"):
            fast.artifact(logged.run_id, "mlops/attestations/missing.json")
        with pytest.raises(Unanswered, match="left to MLflow"):
            fast.artifact(logged.run_id, "../../mlflow.db")
        with pytest.raises(Unanswered, match="0000"):
            fast.datasets(registry.ModelVersion(model_name, 1, "0" * 32, "", ""))


def test_files_digest_is_the_tree_digest_of_the_same_files(tmp_path: Path) -> None:
    (tmp_path / "sub" / "__pycache__").mkdir(parents=True)
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "sub" / "model.pkl").write_bytes(b"\x00\x01")
    (tmp_path / "sub" / "__pycache__" / "x.pyc").write_bytes(b"cache")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]

    digests = {p.relative_to(tmp_path).as_posix(): file_digest(p) for p in files}

    assert files_digest(digests) == tree_digest(tmp_path)
    del digests["sub/__pycache__/x.pyc"]
    assert files_digest(digests) == tree_digest(tmp_path)  # caches never count
    digests["sub/model.pkl"] = hashlib.sha256(b"swapped").hexdigest()
    assert files_digest(digests) != tree_digest(tmp_path)


def test_the_reader_sends_the_credentials_mlflow_sends(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert _auth_headers() == {}

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok")
    assert _auth_headers() == {"Authorization": "Bearer tok"}

    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text(
        "[mlflow]\nmlflow_tracking_username = ann\nmlflow_tracking_password = file-secret\n"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "env-secret")  # the environment wins
    basic = base64.standard_b64encode(b"ann:env-secret").decode()
    assert _auth_headers() == {"Authorization": f"Basic {basic}"}  # before the token


@pytest.mark.parametrize(
    ("uri", "env"),
    [
        ("postgresql://postgres@127.0.0.1:5432/mlflow", {}),
        ("databricks", {}),
        ("file:///tmp/mlruns", {}),
        ("http://127.0.0.1:5000", {"MLFLOW_TRACKING_AUTH": "plugin"}),
        ("https://127.0.0.1:5000", {"MLFLOW_TRACKING_INSECURE_TLS": "true"}),
        ("http://user:pw@127.0.0.1:5000", {}),
        ("sqlite:////nowhere/mlflow.db", {}),  # MLflow creates a missing store
    ],
)
def test_other_stores_are_read_through_mlflow(
    uri: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"MLOPS_TRACKING_URI": uri, **env}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLOPS_REGISTRY_URI", raising=False)

    assert isinstance(open_reader(), MlflowReads)
