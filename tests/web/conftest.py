"""Web page fixtures: the registry server with its ``/ui`` pages over the real MLflow
store of ``tests/server`` (a real sklearn model, evidence recorded as
``mlops.evidence.record`` does, a Data Docs page logged in the model's run)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from registry_server.app import create_app
from registry_server.settings import RegistrySettings
from registry_server.tokens import create_token
from registry_server.web import mount
from tests import _evidence
from tests.conftest import SKLEARN_REQUIREMENTS, DvcRepo, free_port, wait_for_http, write_iris
from tests.server import conftest as _server
from tests.server.conftest import USERS, MlflowModel

# the server tests' session fixtures, shared: one MLflow store, one trained model
mlflow_model = _server.mlflow_model
policy_file = _server.policy_file

SECRET = "web-tests-session-secret"
MLFLOW_UI = "http://mlflow.example:5000"
# the server tests' database parametrisation: a fresh SQLite file, or PostgreSQL emptied
database_url = _server.database_url


def rich_bundle(
    name: str,
    version: int,
    run_id: str,
    *,
    accuracy: float = 0.96,
    champion: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The shared test bundle (``tests._evidence``) with every section filled like the
    library fills it; ``champion`` is ``{"version": ..., "metrics": {...}}``."""
    return _evidence.bundle(
        name,
        version,
        run_id,
        accuracy=accuracy,
        champion=champion["metrics"] if champion else None,
        champion_version=champion["version"] if champion else None,
        champion_run_id=champion.get("run_id", run_id) if champion else None,
        datasets=[_evidence.DATASET],
        git_commit=_evidence.GIT_COMMIT,
        detailed=True,
    )


def record(model: MlflowModel, bundle: dict[str, Any]) -> str:
    """Record the bundle as the library does, plus a Data Docs page per suite in the run."""
    from mlops.validation import ValidationReport, standalone_html

    client = model.client()
    for report in bundle["validation"]:
        page = standalone_html(ValidationReport.from_dict(report))
        client.log_text(model.run_id, page, f"mlops/validation/{report['suite']}.html")
    return _evidence.record(client, model.run_id, bundle)


def web_app(database_url: str, policy: Path, tracking_uri: str, *, clock: Any = None) -> Any:
    """``create_app`` with the pages mounted, as the server will wire it."""
    settings = RegistrySettings(
        database_url=database_url,
        policy_path=policy,
        tracking_uri=tracking_uri,
        reconcile_interval=0,
        mlflow_ui_url=MLFLOW_UI + "/",
    )
    app = create_app(settings, clock=clock)
    mount(app, settings, secret_key=SECRET)
    return app


def issue_tokens(app: Any) -> dict[str, str]:
    with app.state.ctx.db.session() as s:
        return {user: create_token(s, user, roles).token for user, roles in USERS.items()}


@dataclass
class Candidate:
    """A registered version with recorded evidence, ready to be requested."""

    name: str
    version: int
    digest: str


def register(model: MlflowModel, name: str) -> int:
    """``model.register`` with MLflow's global URI pointed at the store meanwhile (MLflow
    resolves ``models:/<model_id>`` sources through the global URI)."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(model.tracking_uri)
    try:
        return model.register(name)
    finally:
        mlflow.set_tracking_uri(previous)


def new_candidate(model: MlflowModel, name: str, **kw: Any) -> Candidate:
    if "champion" not in kw:  # as mlops.evaluate: judged against the holder of the moment
        held = model.champion(name)
        if held["champion_version"] is not None:
            kw["champion"] = {
                "version": held["champion_version"],
                "run_id": held["champion_run_id"],
                "metrics": {"accuracy": 0.93, "f1_macro": 0.92},
            }
    version = register(model, name)
    digest = record(model, rich_bundle(name, version, model.run_id, **kw))
    return Candidate(name, version, digest)


@dataclass(frozen=True)
class TrainedRun:
    """A real ``mlops.start_run`` training run: its model, data and params."""

    model: MlflowModel
    train: Any  # mlops.data.DatasetVersion
    evaluation: Any
    rows: int
    params: dict[str, Any]


def _train(
    repo: DvcRepo, estimator: Any, params: dict[str, Any], train: Any, evaluation: Any
) -> TrainedRun:
    """Train ``estimator`` in ``mlops.start_run`` (lineage, params, model class tags)."""
    import mlflow
    from mlflow.models import infer_signature

    import mlops
    from mlops.tracking import log_model_class

    frame = mlops.data.read_dataframe(train)
    x, y = frame.drop(columns=["target"]), frame["target"]
    with mlops.start_run("web-train", datasets=[train], params=params) as run:
        estimator.fit(x, y)
        log_model_class(estimator)
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=infer_signature(x, y),
            pip_requirements=SKLEARN_REQUIREMENTS,  # named: MLflow's inference is not tested here
        )
    model = MlflowModel(run.tracking_uri, run.run_id, info.model_uri, info.model_id)
    return TrainedRun(model, train, evaluation, len(frame), params)


@pytest.fixture(scope="session")
def champion_and_challenger(
    mlflow_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainedRun, TrainedRun]:
    """Two real runs in one git + DVC repository: the champion, a logistic regression
    (C=1.0) on all 150 iris rows at a clean commit; the challenger, an SVC (C=0.5) on 120
    rows recorded only in the workspace, inside ``dvc exp run`` (DVC_EXP_NAME set), so it
    shares the champion's commit but its tree is dirty."""
    import os

    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    import mlops

    base = tmp_path_factory.mktemp("web-lineage")
    repo = DvcRepo(root=base / "repo", remote=base / "dvc-remote")
    repo.root.mkdir()
    repo.remote.mkdir()
    repo.git("init", "-q", "-b", "main")
    repo.dvc("init", "-q")
    repo.dvc("config", "core.analytics", "false")
    repo.dvc("remote", "add", "-d", "local", str(repo.remote))
    write_iris(repo.root / "data" / "train.csv")
    write_iris(repo.root / "data" / "eval.csv")
    repo.dvc("add", "-q", "data/train.csv", "data/eval.csv")
    repo.commit("track iris")
    repo.dvc("push", "-q")
    train = mlops.data.version("data/train.csv", repo=repo.root)
    evaluation = mlops.data.version("data/eval.csv", repo=repo.root)
    champion = _train(
        repo, LogisticRegression(C=1.0, max_iter=500), {"C": 1.0, "seed": 42}, train, evaluation
    )

    csv = repo.root / "data" / "train.csv"
    csv.write_text("".join(csv.read_text().splitlines(keepends=True)[:121]))  # header + 120
    repo.dvc("add", "-q", "data/train.csv")  # recorded in the workspace, not committed
    smaller = mlops.data.version("data/train.csv", repo=repo.root, workspace=True)
    os.environ["DVC_EXP_NAME"] = "spiky-svc"
    try:
        challenger = _train(repo, SVC(C=0.5), {"C": 0.5, "seed": 42}, smaller, evaluation)
    finally:
        del os.environ["DVC_EXP_NAME"]
    return champion, challenger


def lineage_bundle(
    name: str,
    version: int,
    trained: TrainedRun,
    *,
    accuracy: float,
    champion: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`rich_bundle` whose lineage, validation and evaluation name the run's data."""
    bundle = rich_bundle(name, version, trained.model.run_id, accuracy=accuracy, champion=champion)
    train, evaluation = trained.train.to_dict(), trained.evaluation.to_dict()
    bundle["lineage"] = {"git_commit": trained.train.rev, "datasets": [train]}
    bundle["validation"][0].update(dataset=train, rows=trained.rows)
    bundle["evaluation"].update(dataset=evaluation, rows=150)
    return bundle


def new_lineage_candidate(trained: TrainedRun, name: str, **kw: Any) -> Candidate:
    """Register ``trained``'s model under ``name`` and record evidence naming its data."""
    version = register(trained.model, name)
    digest = record(trained.model, lineage_bundle(name, version, trained, **kw))
    return Candidate(name, version, digest)


@dataclass
class LiveServer:
    """The registry server (with pages) serving on a loopback port in a thread."""

    url: str
    app: Any
    tokens: dict[str, str] = field(default_factory=dict)
    server: Any = None
    thread: threading.Thread | None = None

    def h(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, policy_file: Path, mlflow_model: MlflowModel
) -> Iterator[LiveServer]:
    import uvicorn

    db = tmp_path_factory.mktemp("web-db") / "registry.db"
    app = web_app(f"sqlite:///{db}", policy_file, mlflow_model.tracking_uri)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="registry-ui", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/readyz", timeout=30)
    live = LiveServer(url, app, issue_tokens(app), server, thread)
    yield live
    server.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive(), "the registry server thread did not stop"


@pytest.fixture
def name() -> str:
    return f"web-{uuid.uuid4().hex[:10]}"


def wait_until(predicate: Any, *, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)
