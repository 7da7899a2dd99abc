"""Blast radius: which versions used a dataset, which protected aliases hold them, and their
rollback plans carried out through the gate; real DVC (two data revisions, a local remote),
real MLflow runs from ``mlops.start_run``/``mlops.evaluate``, the server on SQLite and
PostgreSQL.

Three models (``tests._blast``): m1 and m2 have versions trained on revision A of
``data/train.csv``, m3 one trained on revision B; every model's first version was trained
on other data (``data/seed.csv``). m2's newest version was also evaluated on B.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from typer.testing import CliRunner

from mlops.client import RegistryClient
from mlops.errors import ConflictError, PermissionDenied
from tests import _blast
from tests._blast import World
from tests.server.conftest import MlflowModel, Server

blast_world = _blast.blast_world
blast_models = _blast.blast_models

runner = CliRunner()


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
    server: Server, blast_world: World, blast_models: dict[str, str], name: str
) -> None:
    m1, m2, m3 = blast_models["m1"], blast_models["m2"], blast_models["m3"]
    a, b = blast_world.data["A"], blast_world.data["B"]
    glob = f"{name}-*"

    by_md5 = server.client.get("/v1/lineage/affected", params={"md5": a.md5, "model": glob})
    by_rev = server.client.get(
        "/v1/lineage/affected",
        params={"path": "data/train.csv", "rev": blast_world.rev_a[:10], "model": glob},
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
        "data/train.csv@HEAD~1", repo=blast_world.repo.root, model=glob, registry=registry
    )
    assert (radius.md5, radius.rev) == (a.md5, blast_world.rev_a)
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
    server: Server, blast_world: World, blast_models: dict[str, str], name: str, monkeypatch
) -> None:
    import mlops
    from mlops.cli import _lineage
    from mlops.cli._app import app

    m1, m2, m3 = blast_models["m1"], blast_models["m2"], blast_models["m3"]
    glob = f"{name}-*"
    radius = mlops.lineage.affected(
        md5=blast_world.data["A"].md5,
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
    monkeypatch.chdir(blast_world.repo.root)
    result = runner.invoke(
        app,
        [
            *("lineage", "affected", f"data/train.csv@{blast_world.rev_a}", "--model", glob),
            *("--rollback", "-m", "labels shifted in A"),
        ],
    )

    assert result.exit_code == 0, result.output
    assert f"rolled back {m1}@production: v2 -> v1" in result.output
    assert f"rolled back {m2}@production: v3 -> v1" in result.output
    holders = {
        m: server.client.get(f"/v1/aliases/{m}/production").json()["version"]
        for m in blast_models.values()
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
        "/v1/lineage/affected", params={"md5": blast_world.data["A"].md5, "model": glob}
    )
    assert again.json()["holders"] == []  # nothing protected runs on A any more
    moved = [
        (e["payload"]["model"], e["payload"]["to_version"])
        for e in events
        if e["action"] == "rolled_back" and e["payload"]["model"].startswith(name)
    ]
    assert moved == [(m1, 1), (m2, 2), (m2, 1)]

    # the seed data's versions hold production now, with nothing clean below them
    seed = server.client.get(
        "/v1/lineage/affected", params={"md5": blast_world.data["seed"].md5, "model": glob}
    ).json()
    assert [(h["model"], h["version"], h["rollback"]["version"]) for h in seed["holders"]] == [
        (m1, 1, None),
        (m2, 1, None),
    ]
    assert seed["holders"][0]["rollback"]["reason"] == (
        "no earlier approved holder is left on the journal"
    )
    result = runner.invoke(
        app,
        [
            "lineage",
            "affected",
            "--md5",
            blast_world.data["seed"].md5,
            "--model",
            glob,
            "--rollback",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"Not moved (no clean earlier holder): {m1}@production, {m2}@production" in result.output
    assert "mlops request MODEL VERSION --to ALIAS" in result.output

    # a plan made before someone else moved the alias stops before moving anything
    stale = mlops.lineage.affected(md5=blast_world.data["B"].md5, model=glob, registry=as_bob)
    assert [h.plan for h in stale.holders] == [f"roll back {m3}@production v2 -> v1 (1 step)"]
    assert server.post(f"/v1/aliases/{m3}/production/rollback", "ann").status_code == 200
    with pytest.raises(ConflictError, match=f"{m3}@production holds v1, not v2 as planned"):
        mlops.lineage.roll_back(stale, registry=as_bob)


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
def test_cli_bad_data_names(blast_world: World, monkeypatch, args, code, hint) -> None:
    from mlops.cli._app import app

    monkeypatch.chdir(blast_world.repo.root)
    result = runner.invoke(app, ["lineage", "affected", *args, "--url", "http://127.0.0.1:9"])

    assert result.exit_code == 1, result.output
    assert f"{code}:" in result.output
    assert hint in result.output


def test_server_bad_data_names(server: Server, blast_world: World) -> None:
    bad = server.client.get("/v1/lineage/affected", params={"md5": "ABC"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
    assert "query.md5" in bad.json()["message"]
    both = server.client.get("/v1/lineage/affected", params={"md5": "0" * 32, "path": "x"})
    assert (both.status_code, both.json()["code"]) == (422, "invalid_dataset_ref")
    branch = server.client.get(
        "/v1/lineage/affected", params={"path": "data/train.csv", "rev": "main"}
    )
    assert (branch.status_code, branch.json()["code"]) == (404, "dataset_not_recorded")
    assert "not branches or tags" in branch.json()["message"]
    assert "GET /v1/lineage/affected?md5=MD5" in branch.json()["hint"]
    half = server.client.get("/v1/lineage/affected", params={"path": "data/train.csv"})
    assert (half.status_code, half.json()["code"]) == (422, "invalid_dataset_ref")
    unknown = server.client.get(
        "/v1/lineage/affected", params={"path": "data/nothing.csv", "rev": blast_world.rev_a}
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "dataset_not_recorded")
    nobody = server.client.get("/v1/lineage/affected", params={"md5": "0" * 32})
    assert nobody.json() == {
        "dataset": {"md5": "0" * 32, "path": None, "rev": None},
        "versions": [],
        "holders": [],
    }


class _Counting:
    """A real ``MlflowClient`` that counts the calls made through it."""

    def __init__(self, client: Any) -> None:
        self.client, self.calls = client, Counter()

    def __getattr__(self, attr: str) -> Any:
        self.calls[attr] += 1
        return getattr(self.client, attr)


def test_lineage_searches_mlflow_instead_of_reading_each_version(
    server: Server, blast_world: World, blast_models: dict[str, str], name: str
) -> None:
    import mlops

    counting = _Counting(server.model.client())
    md5 = blast_world.data["A"].md5
    used = mlops.lineage.versions_using(md5, model=f"{name}-*", client=counting)

    assert [u.ref for u in used] == [
        f"{blast_models['m1']}/2",
        f"{blast_models['m2']}/2",
        f"{blast_models['m2']}/3",
    ]
    # one search for the runs, one for their versions, one read per model for its aliases
    assert counting.calls == Counter(
        search_experiments=1, search_runs=1, search_model_versions=1, get_registered_model=2
    )
    # any number of models: their aliases come in pages of registered models instead
    counting.calls.clear()
    everyone = mlops.lineage.versions_using(md5, client=counting)
    assert {u.ref for u in used} <= {u.ref for u in everyone}
    reads = counting.calls["get_registered_model"] + counting.calls["search_registered_models"]
    assert reads <= max(len({u.model for u in everyone}), 1)
    assert counting.calls["search_runs"] == counting.calls["search_model_versions"] == 1


def test_aliases_of_many_models_come_in_pages(
    mlflow_model: MlflowModel, blast_world: World
) -> None:
    import mlops

    prefix = f"blast-many-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{i:02d}" for i in range(12)]
    client = mlflow_model.client()
    for name in names:
        client.create_registered_model(name)
        client.create_model_version(name, mlflow_model.model_uri, run_id=blast_world.runs["b1"])
    client.set_registered_model_alias(names[3], "production", "1")
    counting = _Counting(client)

    used = mlops.lineage.versions_using(
        blast_world.data["B"].md5, model=f"{prefix}-*", client=counting
    )

    assert [u.ref for u in used] == [f"{n}/1" for n in names]
    assert [u.aliases for u in used if u.aliases] == [("production",)]
    assert used[3].aliases == ("production",)
    assert counting.calls == Counter(
        search_experiments=1, search_runs=1, search_model_versions=1, search_registered_models=1
    )
