"""Web page fixtures: the registry server with its ``/ui`` pages over the real MLflow
store of ``tests/server`` (a real sklearn model, evidence recorded as
``mlops.evidence.record`` does, a Data Docs page logged in the model's run)."""

from __future__ import annotations

import hashlib
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
from tests.conftest import free_port, wait_for_http
from tests.server import conftest as _server
from tests.server.conftest import USERS, MlflowModel, canonical

# the server tests' session fixtures, shared: one MLflow store, one trained model
mlflow_model = _server.mlflow_model
policy_file = _server.policy_file

SECRET = "web-tests-session-secret"


def rich_bundle(
    name: str,
    version: int,
    run_id: str,
    *,
    accuracy: float = 0.96,
    champion: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A schema-1 evidence bundle with every section filled like the library fills it."""
    dataset = {
        "path": "data/iris.csv",
        "md5": "5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1",
        "rev": "3f2a9c0d1e4b5a69788f0a1b2c3d4e5f60718293",
        "remote": "/srv/dvc-remote",
        "repo": "/work/iris",
        "size": 2771,
        "nfiles": None,
    }
    champ_metrics = champion["metrics"] if champion else None
    verdicts = [
        {
            "metric": "accuracy",
            "candidate": accuracy,
            "champion": champ_metrics["accuracy"] if champ_metrics else None,
            "passed": True,
            "reasons": [],
        }
    ]
    results = [
        {
            "type": "expect_column_values_to_not_be_null",
            "column": "sepal length (cm)",
            "kwargs": {"column": "sepal length (cm)"},
            "success": True,
            "observed": {},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "column": "target",
            "kwargs": {"column": "target", "value_set": [0, 1, 2]},
            "success": True,
            "observed": {},
        },
    ]
    return {
        "schema": 1,
        "model": {"name": name, "version": version, "run_id": run_id},
        "lineage": {
            "git_commit": "9d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796",
            "datasets": [dataset],
        },
        "validation": [
            {
                "suite": "iris_train",
                "success": True,
                "statistics": {
                    "evaluated": 2,
                    "successful": 2,
                    "unsuccessful": 0,
                    "success_percent": 100.0,
                },
                "results": results,
                "dataset": dataset,
                "rows": 150,
                "digest": hashlib.sha256(b"iris_train").hexdigest(),
            }
        ],
        "evaluation": {
            "model": name,
            "candidate_version": version,
            "champion_alias": "production",
            "champion_version": champion["version"] if champion else None,
            "champion_run_id": champion.get("run_id", run_id) if champion else None,
            "task": "classification",
            "dataset": dataset,
            "rows": 150,
            "metrics": {
                "candidate": {"accuracy": accuracy, "f1_macro": accuracy - 0.01},
                "champion": champ_metrics,
            },
            "verdicts": verdicts,
            "beats_champion": True if champion else None,
            "passed": True,
            "notes": [],
        },
        "package": {
            "bento_tag": f"{name.lower()}:v{version}abc",
            "model_tag": f"{name.lower()}:v{version}def",
            "smoke": {"passed": True, "rows": 3, "mismatches": 0, "error": None, "seconds": 0.41},
            "parity": {"passed": True, "missing": [], "mismatched": []},
            "passed": True,
        },
    }


def record(model: MlflowModel, bundle: dict[str, Any]) -> str:
    """Log the bundle and a Data Docs page to the run and tag the version, as the library."""
    from mlops.validation import ValidationReport, standalone_html

    name, version = bundle["model"]["name"], bundle["model"]["version"]
    digest = hashlib.sha256(canonical(bundle)).hexdigest()
    path = f"mlops/evidence/{digest}.json"
    client = model.client()
    client.log_text(model.run_id, canonical(bundle).decode(), path)
    for report in bundle["validation"]:
        page = standalone_html(ValidationReport.from_dict(report))
        client.log_text(model.run_id, page, f"mlops/validation/{report['suite']}.html")
    client.set_model_version_tag(name, str(version), "mlops.evidence.digest", digest)
    client.set_model_version_tag(name, str(version), "mlops.evidence.path", path)
    return digest


def web_app(database_url: str, policy: Path, tracking_uri: str, *, clock: Any = None) -> Any:
    """``create_app`` with the pages mounted, as the server will wire it."""
    settings = RegistrySettings(
        database_url=database_url,
        policy_path=policy,
        tracking_uri=tracking_uri,
        reconcile_interval=0,
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
