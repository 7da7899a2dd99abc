"""The blast-radius world, built once per session: a DVC repo with two revisions of
``data/train.csv`` (A and B, pushed to a local remote) and ``data/seed.csv``, one
``mlops.start_run`` run per model version, and three models promoted through the gate.

m1: v1 (seed) -> v2 (A); m2: v1 (seed) -> v2 (A) -> v3 (A, and evaluated on B by
``mlops.evaluate``); m3: v1 (seed) -> v2 (B). Each is promoted to ``production`` with
two approvals; m1 v2 also holds the unprotected alias ``candidate``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import _evidence
from tests.conftest import DvcRepo, new_dvc_repo
from tests.server.conftest import MlflowModel, Server

__all__ = ["World", "blast_models", "blast_world"]


@dataclass(frozen=True)
class World:
    repo: DvcRepo
    rev_a: str
    rev_b: str
    data: dict[str, Any]  # "seed", "A", "B" -> DatasetVersion
    runs: dict[str, str]  # run label -> run id


def _write(path: Path, rows: slice, salt: float) -> None:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.iloc[rows].copy()
    frame.iloc[0, 0] = round(float(frame.iloc[0, 0]) + salt, 6)  # data no other test has
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


@pytest.fixture(scope="session")
def blast_world(
    mlflow_model: MlflowModel, tmp_path_factory: pytest.TempPathFactory, _initialised_repo: Path
) -> World:
    """A DVC repo with ``data/train.csv`` at revisions A and B (pushed to a local remote)
    and ``data/seed.csv``; one ``mlops.start_run`` run per model version below."""
    import mlops

    salt = uuid.uuid4().int % 10_000 / 1e6
    base = tmp_path_factory.mktemp("blast")
    repo = new_dvc_repo(_initialised_repo, base / "repo", base / "remote")
    _write(repo.root / "data" / "seed.csv", slice(0, 150, 2), salt)
    _write(repo.root / "data" / "train.csv", slice(0, 150), salt)
    repo.dvc("add", "-q", "data/seed.csv", "data/train.csv")
    rev_a = repo.commit("data A")
    _write(repo.root / "data" / "train.csv", slice(0, 150), salt + 0.5)
    repo.dvc("add", "-q", "data/train.csv")
    rev_b = repo.commit("data B")
    repo.dvc("push", "-q")
    data = {
        "seed": mlops.data.version("data/seed.csv", repo=repo.root, rev=rev_b),
        "A": mlops.data.version("data/train.csv", repo=repo.root, rev=rev_a),
        "B": mlops.data.version("data/train.csv", repo=repo.root, rev=rev_b),
    }
    assert data["A"].md5 != data["B"].md5
    trained_on = {
        "seed1": "seed",
        "seed2": "seed",
        "seed3": "seed",
        "a1": "A",
        "a2": "A",
        "a3": "A",
        "b1": "B",
    }
    runs = {}
    for label, what in trained_on.items():
        with mlops.start_run(f"blast-{label}", datasets=[data[what]]) as run:
            runs[label] = run.run_id
    # m2's newest version (run a3) is evaluated on B by mlops.evaluate, which logs the
    # evaluation data to the candidate's run
    probe = f"blast-probe-{uuid.uuid4().hex[:8]}"
    version = _register(mlflow_model, probe, runs["a3"])
    mlops.evaluate(probe, version, data=data["B"], target="target")
    return World(repo, rev_a, rev_b, data, runs)


def _register(model: MlflowModel, name: str, run_id: str) -> int:
    """A version of ``name`` with the session's real sklearn model, produced by ``run_id``."""
    client = model.client()
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    return int(client.create_model_version(name, model.model_uri, run_id=run_id).version)


def _promote(server: Server, world: World, name: str, run: str, data: str) -> int:
    """Register a version from ``run`` and promote it to production with two approvals."""
    version = _register(server.model, name, world.runs[run])
    bundle = _evidence.bundle(
        name,
        version,
        world.runs[run],
        datasets=[world.data[data].to_dict()],
        **server.model.champion(name),
        champion={"accuracy": 0.9} if server.model.champion(name)["champion_version"] else None,
    )
    digest = _evidence.record(server.model.client(), world.runs[run], bundle)
    res = server.request(name, version, digest)
    assert res.status_code == 201, res.json()
    for user in ("ann", "bob"):
        res = server.approve(res.json()["id"], user)
    assert res.json()["state"] == "promoted", res.json()
    return version


@pytest.fixture
def blast_models(server: Server, blast_world: World, name: str) -> dict[str, str]:
    """m1: v1 (seed) -> v2 (A); m2: v1 (seed) -> v2 (A) -> v3 (A, evaluated on B);
    m3: v1 (seed) -> v2 (B); each step promoted to production through the gate."""
    world = blast_world
    names = {m: f"{name}-{m}" for m in ("m1", "m2", "m3")}
    plan = {
        "m1": [("seed1", "seed"), ("a1", "A")],
        "m2": [("seed2", "seed"), ("a2", "A"), ("a3", "A")],
        "m3": [("seed3", "seed"), ("b1", "B")],
    }
    for m, steps in plan.items():
        for run, data in steps:
            _promote(server, world, names[m], run, data)
    # a non-protected alias on an affected version: listed on the version, not as a holder
    server.model.client().set_registered_model_alias(names["m1"], "candidate", "2")
    return names
