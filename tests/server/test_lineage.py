"""Blast radius: which versions used a dataset, which protected aliases hold them, and their
rollback plans carried out through the gate; real DVC (two data revisions, a local remote),
real MLflow runs from ``mlops.start_run``/``mlops.evaluate``, the server on SQLite and
PostgreSQL.

Three models: m1 and m2 have versions trained on revision A of ``data/train.csv``, m3 one
trained on revision B; every model's first version was trained on other data
(``data/seed.csv``). m2's newest version was also evaluated on B.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mlops.client import RegistryClient
from mlops.errors import PermissionDenied
from tests import _evidence
from tests.conftest import DvcRepo, new_dvc_repo
from tests.server.conftest import MlflowModel, Server

runner = CliRunner()


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


@pytest.fixture(scope="module")
def world(
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
def models(server: Server, world: World, name: str) -> dict[str, str]:
    """m1: v1 (seed) -> v2 (A); m2: v1 (seed) -> v2 (A) -> v3 (A, evaluated on B);
    m3: v1 (seed) -> v2 (B); each step promoted to production through the gate."""
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


def _summary(body: dict) -> tuple[list, list]:
    versions = [(v["model"], v["version"], v["uses"], v["aliases"]) for v in body["versions"]]
    holders = [
        (
            h["model"],
            h["alias"],
            h["version"],
            h["rollback"]["version"],
            h["rollback"]["steps"],
            h["rollback"]["through"],
        )
        for h in body["holders"]
    ]
    return versions, holders


def test_blast_radius_of_two_revisions_by_md5_and_by_path_at_rev(
    server: Server, world: World, models: dict[str, str], name: str
) -> None:
    m1, m2, m3 = models["m1"], models["m2"], models["m3"]
    a, b = world.data["A"], world.data["B"]
    glob = f"{name}-*"

    by_md5 = server.client.get("/v1/lineage/affected", params={"md5": a.md5, "model": glob})
    by_rev = server.client.get(
        "/v1/lineage/affected",
        params={"path": "data/train.csv", "rev": world.rev_a[:10], "model": glob},
    )

    assert by_md5.status_code == 200, by_md5.json()
    assert _summary(by_md5.json()) == (
        [
            (m1, 2, ["training"], ["candidate", "production"]),
            (m2, 2, ["training"], []),
            (m2, 3, ["training"], ["production"]),
        ],
        [(m1, "production", 2, 1, 1, []), (m2, "production", 3, 1, 2, [2])],
    )
    assert by_rev.json()["dataset"]["md5"] == a.md5
    assert _summary(by_rev.json()) == _summary(by_md5.json())

    radius_b = server.client.get("/v1/lineage/affected", params={"md5": b.md5, "model": glob})
    assert _summary(radius_b.json()) == (
        [(m2, 3, ["evaluation"], ["production"]), (m3, 2, ["training"], ["production"])],
        [(m2, "production", 3, 2, 1, []), (m3, "production", 2, 1, 1, [])],
    )

    # the library resolves PATH@REV through DVC (a branch-relative rev the server cannot read)
    import mlops

    registry = RegistryClient(http=server.client, token=server.tokens["ann"])
    radius = mlops.lineage.affected(
        "data/train.csv@HEAD~1", repo=world.repo.root, model=glob, registry=registry
    )
    assert (radius.md5, radius.rev) == (a.md5, world.rev_a)
    assert [h.plan for h in radius.holders] == [
        f"roll back {m1}@production v2 -> v1 (1 step)",
        f"roll back {m2}@production v3 -> v1 (2 steps, through v2)",
    ]
    # MLflow alone (no server): the same versions
    used = mlops.lineage.versions_using(b.md5, model=glob)
    assert [(u.ref, u.uses) for u in used] == [
        (f"{m2}/3", ("evaluation",)),
        (f"{m3}/2", ("training",)),
    ]


def test_rollback_plan_runs_through_the_gate_and_is_audited(
    server: Server, world: World, models: dict[str, str], name: str, monkeypatch
) -> None:
    import mlops
    from mlops.cli import _lineage
    from mlops.cli._app import app

    m1, m2, m3 = models["m1"], models["m2"], models["m3"]
    glob = f"{name}-*"
    radius = mlops.lineage.affected(
        md5=world.data["A"].md5,
        model=glob,
        registry=RegistryClient(http=server.client, token=server.tokens["rita"]),
    )
    with pytest.raises(PermissionDenied, match="may not roll back"):
        mlops.lineage.roll_back(
            radius, registry=RegistryClient(http=server.client, token=server.tokens["rita"])
        )
    assert server.client.get(f"/v1/aliases/{m1}/production").json()["version"] == 2

    as_bob = RegistryClient(http=server.client, token=server.tokens["bob"])
    monkeypatch.setattr(_lineage, "client", lambda url, token: as_bob)
    monkeypatch.chdir(world.repo.root)
    result = runner.invoke(
        app,
        [
            *("lineage", "affected", f"data/train.csv@{world.rev_a}", "--model", glob),
            *("--rollback", "-m", "labels shifted in A"),
        ],
    )

    assert result.exit_code == 0, result.output
    assert f"rolled back {m1}@production: v2 -> v1" in result.output
    assert f"rolled back {m2}@production: v3 -> v1" in result.output
    holders = {
        m: server.client.get(f"/v1/aliases/{m}/production").json()["version"]
        for m in models.values()
    }
    assert holders == {m1: 1, m2: 1, m3: 2}  # m3 never used A
    mlflow = server.model.client()
    assert [int(mlflow.get_model_version_by_alias(m, "production").version) for m in (m1, m2)] == [
        1,
        1,
    ]
    events = server.client.get("/v1/audit?limit=1000", headers=server.h("root")).json()["items"]
    rolled = [
        (
            e["payload"]["model"],
            e["payload"]["from_version"],
            e["payload"]["to_version"],
            e["actor"],
        )
        for e in events
        if e["action"] == "rollback_requested" and e["payload"]["model"].startswith(name)
    ]
    assert rolled == [(m1, 2, 1, "bob"), (m2, 3, 2, "bob"), (m2, 2, 1, "bob")]
    comments = [e["payload"]["comment"] for e in events if e["action"] == "rollback_requested"]
    assert any("labels shifted in A" in c and "step 2/2 toward v1" in c for c in comments)
    again = server.client.get(
        "/v1/lineage/affected", params={"md5": world.data["A"].md5, "model": glob}
    )
    assert again.json()["holders"] == []  # nothing protected runs on A any more


@pytest.mark.parametrize(
    ("args", "code", "hint"),
    [
        (["--md5", "not-an-md5"], "invalid_dataset_ref", "mlops lineage affected --md5"),
        (["data/missing.csv@HEAD"], "data_not_tracked", "mlops lineage affected PATH@REV"),
        (
            ["data/train.csv@no-such-rev"],
            "revision_not_found",
            "mlops lineage affected PATH@HEAD~1",
        ),
    ],
)
def test_cli_bad_data_names(world: World, monkeypatch, args, code, hint) -> None:
    from mlops.cli._app import app

    monkeypatch.chdir(world.repo.root)
    result = runner.invoke(app, ["lineage", "affected", *args, "--url", "http://127.0.0.1:9"])

    assert result.exit_code == 1, result.output
    assert f"{code}:" in result.output
    assert hint in result.output


def test_server_bad_data_names(server: Server, world: World) -> None:
    bad = server.client.get("/v1/lineage/affected", params={"md5": "ABC"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_dataset_ref")
    assert "'ABC'" in bad.json()["message"]
    both = server.client.get("/v1/lineage/affected", params={"md5": "0" * 32, "path": "x"})
    assert (both.status_code, both.json()["code"]) == (422, "invalid_dataset_ref")
    branch = server.client.get(
        "/v1/lineage/affected", params={"path": "data/train.csv", "rev": "main"}
    )
    assert (branch.status_code, branch.json()["code"]) == (422, "invalid_dataset_ref")
    unknown = server.client.get(
        "/v1/lineage/affected", params={"path": "data/nothing.csv", "rev": world.rev_a}
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "dataset_not_recorded")
    nobody = server.client.get("/v1/lineage/affected", params={"md5": "0" * 32})
    assert nobody.json() == {
        "dataset": {"md5": "0" * 32, "path": None, "rev": None},
        "versions": [],
        "holders": [],
    }
