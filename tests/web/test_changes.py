"""What the pages say changed, what blocks a request, and the audit as readable lines:
real MLflow runs trained through ``mlops.start_run`` in a git + DVC repository, the server
on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from registry_server.web import _audit
from registry_server.web._compare import _code_changes, param_rows
from tests.server.conftest import Clock
from tests.web.conftest import (
    MLFLOW_UI,
    MlflowModel,
    TrainedRun,
    issue_tokens,
    new_candidate,
    new_lineage_candidate,
    web_app,
)

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Pages:
    """A signed-in TestClient on the pages, plus the REST calls that set the scene."""

    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client, self.tokens = client, tokens

    def h(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def login(self, user: str) -> None:
        csrf = _CSRF.search(self.client.get("/ui/login").text)
        assert csrf
        form = {"token": self.tokens[user], "csrf_token": csrf.group(1), "next": "/ui/requests"}
        assert self.client.post("/ui/login", data=form, follow_redirects=False).status_code == 303

    def request(self, name: str, version: int, digest: str) -> int:
        body = {"model": name, "version": version, "target": "production"}
        res = self.client.post(
            "/v1/promotions", json=body | {"evidence_digest": digest}, headers=self.h("rita")
        )
        assert res.status_code == 201, res.text
        return res.json()["id"]

    def approve(self, rid: int, *users: str) -> dict[str, Any]:
        for user in users:
            res = self.client.post(f"/v1/promotions/{rid}/approve", json={}, headers=self.h(user))
            assert res.status_code == 200, res.text
        return res.json()

    def get(self, path: str) -> str:
        res = self.client.get(path)
        assert res.status_code == 200, res.text
        return res.text


@pytest.fixture
def pages(database_url: str, policy_file: Path, mlflow_model: MlflowModel) -> Iterator[Pages]:
    app = web_app(database_url, policy_file, mlflow_model.tracking_uri, clock=Clock())
    with TestClient(app) as client:
        yield Pages(client, issue_tokens(app))
    app.state.ctx.db.dispose()


def _text(page: str) -> str:
    """The page's visible text on one line (inline tags dropped, others a space)."""
    inline = re.sub(r"</?(?:a|code|span|strong|small)\b[^>]*>", "", page)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", inline)))


def _promoted_pair(
    pages: Pages, runs: tuple[TrainedRun, TrainedRun], name: str
) -> tuple[int, int, int]:
    """The champion promoted to production, the challenger requested against it."""
    champion_run, challenger_run = runs
    champ = new_lineage_candidate(champion_run, name, accuracy=0.93)
    pages.approve(pages.request(name, champ.version, champ.digest), "ann", "bob")
    metrics = {"accuracy": 0.93, "f1_macro": 0.92}
    cand = new_lineage_candidate(
        challenger_run,
        name,
        accuracy=0.97,
        champion={
            "version": champ.version,
            "metrics": metrics,
            "run_id": champion_run.model.run_id,  # the holder it was judged against
        },
    )
    return champ.version, cand.version, pages.request(name, cand.version, cand.digest)


def test_request_names_model_class_param_data_and_code_changes(
    pages: Pages, champion_and_challenger: tuple[TrainedRun, TrainedRun], name: str
) -> None:
    champion_run, challenger_run = champion_and_challenger
    champ, cand, rid = _promoted_pair(pages, champion_and_challenger, name)
    pages.login("ann")
    page = pages.get(f"/ui/requests/{rid}")
    text = _text(page)
    old, new = champion_run.train.md5, challenger_run.train.md5
    commit = champion_run.train.rev
    assert challenger_run.train.rev == commit  # one baseline commit, as in `dvc exp run`
    for change in (
        "changed Model class: LogisticRegression (champion) → SVC (candidate)",
        "changed Parameter C: 1.0 → 0.5",
        f"changed Training data data/train.csv: md5 {old[:8]} → {new[:8]}, rows 150 → 120",
        f"changed Code: same commit {commit[:8]}, but the candidate ran with uncommitted "
        "changes: the code may differ",
        "changed DVC experiment: none → spiky-svc",
    ):
        assert change in text, change
    assert "Parameter seed" not in text  # equal parameters are not listed as changes
    params = page[page.index('id="params"') : page.index('id="h-data"')]
    assert re.search(r"<code>seed</code>.*?42.*?42.*?>same<", params, re.S)
    assert re.search(r'class="differs"><th scope="row"><code>C</code>.*?>changed<', params, re.S)
    # model, flavor and both runs, linked into the MLflow UI
    assert "sklearn.svm._classes.SVC" in page and "sklearn.linear_model._logistic" in page
    assert text.count("sklearn 1.") >= 2
    for run in (champion_run, challenger_run):
        assert re.search(
            rf'href="{re.escape(MLFLOW_UI)}/#/experiments/\d+/runs/{run.model.run_id}"', page
        )
    assert f'href="{MLFLOW_UI}/#/models/{name}/versions/{cand}"' in page
    assert f'href="{MLFLOW_UI}/#/models/{name}/versions/{champ}"' in page
    # both datasets: md5, rows, columns, and the candidate's data is a workspace record
    data = _text(page[page.index('id="data"') : page.index('id="h-validation"')])
    assert f"md5 {new}" in data and f"md5 {old}" in data
    assert "120 rows 4 columns" in data and "150 rows 4 columns" in data
    assert (
        f'uncommitted</span> workspace data (based on <code title="{commit}">{commit[:8]}</code>)'
        in page
    )
    assert "changed md5, rows" in data
    assert f"evaluation: data/eval.csv md5 {challenger_run.evaluation.md5}" in data
    assert "Working tree dirty uncommitted changes clean may differ" in _text(page)


def test_request_without_champion_says_there_is_nothing_to_compare(
    pages: Pages, mlflow_model: MlflowModel, name: str
) -> None:
    cand = new_candidate(mlflow_model, name)
    rid = pages.request(name, cand.version, cand.digest)
    pages.login("ann")
    text = _text(pages.get(f"/ui/requests/{rid}"))
    assert "No champion: nothing held production when this version was evaluated" in text
    assert "Candidate v1" in text


def test_pending_list_shows_checks_headline_metric_champion_and_blockers(
    pages: Pages, champion_and_challenger: tuple[TrainedRun, TrainedRun], name: str
) -> None:
    champ, cand, rid = _promoted_pair(pages, champion_and_challenger, name)
    pages.login("ann")
    page = pages.get("/ui/requests")
    row = re.search(rf'<tr>\s*<th scope="row"><a href="/ui/requests/{rid}">.*?</tr>', page, re.S)
    assert row, page
    cells = _text(row.group(0))
    assert f"#{rid} {name} v{cand} to production" in cells
    assert "pass all 4 checks" in cells  # suite, accuracy threshold, beats champion, smoke test
    assert "accuracy 0.97 (+0.04 better)" in cells
    assert f"v{champ}" in cells
    assert "0/2" in cells and "approvals: 0 of 2 required" in cells


def test_pending_list_names_a_failed_check_as_the_blocker(
    pages: Pages, mlflow_model: MlflowModel, name: str
) -> None:
    from tests.web.conftest import register

    version = register(mlflow_model, name)
    rid = pages.request(name, version, mlflow_model.record(name, version))
    mlflow_model.record(name, version, suite_ok=False, accuracy=0.5)  # evidence replaced
    pages.login("ann")
    page = pages.get("/ui/requests")
    row = re.search(rf'<a href="/ui/requests/{rid}">.*?</tr>', page, re.S)
    assert row
    cells = _text(row.group(0))
    assert "fail suites.iris_train, metrics.accuracy" in cells
    assert (
        "approvals: 0 of 2 required; evidence changed since the request; "
        "check failed: suites.iris_train; check failed: metrics.accuracy"
    ) in cells
    assert "accuracy 0.5 (no champion value)" in cells and "none" in cells


def test_audit_reads_as_lines_with_links_filters_and_pages(
    pages: Pages, mlflow_model: MlflowModel, name: str
) -> None:
    cand = new_candidate(mlflow_model, name)
    rid = pages.request(name, cand.version, cand.digest)
    pages.approve(rid, "ann", "bob")
    other = new_candidate(mlflow_model, name + "-other")
    pages.request(name + "-other", other.version, other.digest)
    pages.login("ann")

    page = pages.get(f"/ui/audit?model={name}")
    actions = re.findall(r'data-action="([a-z_]+)"', page)
    assert actions == ["promoted", "approved", "approval", "approval", "requested"]  # newest first
    text = _text(page)
    req = f"request #{rid} ({name} v{cand.version} to production)"
    assert f"decision: approval bob approved {req} (2 of 2 approvals)" in text
    quorum = f"state change: approved Quorum reached with bob's approval: {req} is now approved"
    assert quorum in text
    assert f"alias move: promoted {name}@production now points at v1 (was unset)" in text
    assert f'href="/ui/requests/{rid}"' in page
    assert f'href="/ui/aliases/{name}/production"' in page
    assert f'href="{MLFLOW_UI}/#/models/{name}/versions/{cand.version}"' in page
    assert "key=" not in page and "request_id=" not in page

    by_actor = pages.get(f"/ui/audit?model={name}&actor=bob")
    # bob's approval completed the quorum: his decision and the state change it caused
    assert re.findall(r'data-action="([a-z_]+)"', by_actor) == ["approved", "approval"]
    by_action = pages.get("/ui/audit?action=requested")
    assert name + "-other" in by_action and 'data-action="approval"' not in by_action
    assert pages.client.get("/ui/audit?action=DROP%20TABLE").status_code == 422

    ctx = pages.client.app.state.ctx
    first = _audit.events_page(ctx, model=name, limit=2)
    assert [e["action"] for e in first["events"]] == ["promoted", "approved"]
    assert first["total"] == 5
    second = _audit.events_page(ctx, model=name, limit=2, before=first["next_before"])
    assert [e["action"] for e in second["events"]] == ["approval", "approval"]
    older = pages.get(f"/ui/audit?model={name}&before={second['next_before']}")
    assert re.findall(r'data-action="([a-z_]+)"', older) == ["requested"]
    assert "Newest events" in older


def test_model_filter_is_exact_and_escapes_like_wildcards(
    pages: Pages, mlflow_model: MlflowModel, name: str
) -> None:
    cand = new_candidate(mlflow_model, name)
    pages.request(name, cand.version, cand.digest)
    pages.login("ann")
    assert "No events match." in pages.get(f"/ui/audit?model={name[:-1]}")
    assert "No events match." in pages.get(f"/ui/audit?model={name[:-1]}_")
    assert "No events match." in pages.get("/ui/audit?model=%25")


def test_favicon_is_served(pages: Pages) -> None:
    icon = pages.client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert pages.client.get("/ui/static/favicon.svg").status_code == 200
    assert '<link rel="icon" type="image/svg+xml" href="/ui/static/favicon.svg">' in (
        pages.client.get("/ui/login").text
    )


def test_same_commit_with_a_dirty_tree_is_named_as_a_possible_code_change() -> None:
    base = {"commit": "a" * 40, "dirty": False, "dvc_exp": None}
    dirty = base | {"dirty": True, "dvc_exp": "lusty-bass"}
    assert _code_changes(dirty, base) == [
        "Code: same commit aaaaaaaa, but the candidate ran with uncommitted changes: "
        "the code may differ",
        "DVC experiment: none → lusty-bass",
    ]
    assert _code_changes(base, base) == []
    assert [r["differs"] for r in param_rows({"C": "1"}, None)] == [False]


def test_gateway_describes_a_version_from_its_run_and_logged_model(
    champion_and_challenger: tuple[TrainedRun, TrainedRun], name: str
) -> None:
    from mlops.errors import ModelVersionNotFound
    from registry_server.mlflow_gateway import MlflowGateway
    from tests.web.conftest import register

    _, challenger = champion_and_challenger
    version = register(challenger.model, name)
    gw = MlflowGateway(challenger.model.tracking_uri)
    got = gw.describe_version(name, version)
    assert got.run_id == challenger.model.run_id and got.model_id == challenger.model.model_id
    assert got.params == {"C": "0.5", "seed": "42"}
    assert got.tags["mlops.model.class"] == "sklearn.svm._classes.SVC"
    assert got.tags["mlops.git_dirty"] == "true"
    assert got.tags["mlops.dvc.exp_name"] == "spiky-svc"
    assert set(got.flavors) == {"python_function", "sklearn"}
    assert [c["name"] for c in got.signature][:2] == ["sepal length (cm)", "sepal width (cm)"]
    (data,) = got.datasets
    assert (data["name"], data["digest"], data["context"]) == (
        "data/train.csv",
        challenger.train.md5,
        "training",
    )
    assert data["source"]["committed"] is False
    with pytest.raises(ModelVersionNotFound, match=f"Model '{name}' has no version 99"):
        gw.describe_version(name, 99)
