"""Server fixtures: a real MLflow SQLite store with a real sklearn model, evidence recorded
as ``mlops.evidence`` does (artifact + version tags), the server on SQLite or PostgreSQL,
users with tokens, and an injectable clock."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from registry_server.app import create_app
from registry_server.mlflow_gateway import MlflowGateway
from registry_server.settings import RegistrySettings
from registry_server.tokens import create_token
from tests import _evidence
from tests._evidence import canonical as canonical  # re-exported for the server tests
from tests.conftest import SKLEARN_REQUIREMENTS, use_experiment

POLICY = """
version: 1
targets:
  production:
    protected: true
    checks:
      suites: [iris_train]
      metrics:
        accuracy: {threshold: 0.8, min_absolute_change: 0.0, greater_is_better: true}
      must_beat_champion: true
      smoke_test: true
    approvals: {count: 2, roles: [approver, admin], exclude_requester: true, distinct: true,
                ttl: 72h}
    freeze_windows:
      - {start: 2026-12-24T00:00:00Z, end: 2026-12-27T00:00:00Z, reason: holidays}
    rollback: {roles: [approver, admin]}
  staging:
    checks: {suites: [iris_train]}
    approvals: {count: 1, request_ttl: 24h}
"""

USERS = {
    "rita": ["requester"],
    "ann": ["approver"],
    "bob": ["approver"],
    "dan": ["requester", "approver"],
    "root": ["admin"],
}
START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@contextlib.contextmanager
def tracking(uri: str) -> Iterator[None]:
    """Point MLflow's global tracking URI at ``uri`` for the block, then restore it."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass(frozen=True)
class MlflowModel:
    tracking_uri: str
    run_id: str
    model_uri: str
    model_id: str | None = None

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)

    def register(self, name: str) -> int:
        """A new registered version of the trained model under ``name``."""
        client = self.client()
        with tracking(self.tracking_uri):  # MLflow resolves the logged model globally
            if not client.search_registered_models(filter_string=f"name = '{name}'"):
                client.create_registered_model(name)
            mv = client.create_model_version(
                name, self.model_uri, run_id=self.run_id, model_id=self.model_id
            )
        return int(mv.version)

    def champion(self, name: str, alias: str = "production") -> dict[str, Any]:
        """The holder of ``alias`` in MLflow now, as ``mlops.evaluate`` records it."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client().get_model_version_by_alias(name, alias)
        except MlflowException:
            return {"champion_version": None, "champion_run_id": None}
        return {"champion_version": int(mv.version), "champion_run_id": mv.run_id}

    def record(self, name: str, version: int, **overrides: Any) -> str:
        """Record an evidence bundle for the version the way ``mlops.evidence.record`` does.

        The evaluation names the ``production`` holder of the moment, as ``mlops.evaluate``
        does, unless ``champion_version`` (and ``champion_run_id``) are given.
        """
        if "champion_version" not in overrides:
            overrides |= self.champion(name)
        bundle = evidence_bundle(name, version, self.run_id, **overrides)
        return _evidence.record(self.client(), self.run_id, bundle)


def evidence_bundle(
    name: str,
    version: int,
    run_id: str,
    *,
    accuracy: float = 0.95,
    champion: float | None = None,
    champion_version: int | None = None,
    champion_run_id: str | None = None,
    suite_ok: bool = True,
    smoke_ok: bool = True,
) -> dict[str, Any]:
    """The shared test bundle (``tests._evidence``); ``champion`` is its accuracy."""
    if champion is None and champion_version is not None:  # evaluate scores the holder too
        champion = round(accuracy - 0.01, 4)
    champ = {"accuracy": champion} if champion is not None else None
    return _evidence.bundle(
        name,
        version,
        run_id,
        accuracy=accuracy,
        champion=champ,
        champion_version=champion_version,
        champion_run_id=champion_run_id,
        suite_ok=suite_ok,
        smoke_ok=smoke_ok,
    )


def log_model(tracking_uri: str) -> MlflowModel:
    """Train a small real sklearn model and log it to a run at ``tracking_uri``."""
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    with tracking(tracking_uri):
        x, y = load_iris(return_X_y=True, as_frame=True)
        model = LogisticRegression(max_iter=300).fit(x, y)
        use_experiment(tracking_uri, "registry-server-tests")
        with mlflow.start_run() as run:
            info = mlflow.sklearn.log_model(
                model, name="model", pip_requirements=SKLEARN_REQUIREMENTS
            )
    return MlflowModel(tracking_uri, run.info.run_id, info.model_uri, info.model_id)


@pytest.fixture(scope="session")
def mlflow_model(mlflow_home: Path) -> MlflowModel:
    """One real sklearn model logged to a run in the session's MLflow SQLite store."""
    return log_model(f"sqlite:///{mlflow_home / 'mlflow.db'}")


@pytest.fixture(scope="session")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "promotion-policy.yaml"
    path.write_text(POLICY)
    return path


def _truncate(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        tables = (
            "attestations, audit_checkpoints, webhook_deliveries, webhooks, outbox, "
            "audit_events, alias_journal, approvals, policies, promotion_requests, tokens, users"
        )
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The server's database: a fresh SQLite file, or the session PostgreSQL DB emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url = request.getfixturevalue("pg_url")
    from registry_server.db.engine import Database

    db = Database(url)
    db.upgrade()
    db.dispose()
    _truncate(url)
    return url


@dataclass
class Server:
    client: TestClient
    clock: Clock
    model: MlflowModel
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def ctx(self) -> Any:
        return self.client.app.state.ctx

    def h(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def post(self, path: str, user: str, body: dict | None = None) -> Any:
        return self.client.post(path, json=body, headers=self.h(user))

    def request(
        self,
        name: str,
        version: int,
        digest: str,
        *,
        target: str = "production",
        user: str = "rita",
    ) -> Any:
        body = {"model": name, "version": version, "target": target, "evidence_digest": digest}
        return self.post("/v1/promotions", user, body)

    def approve(self, request_id: int, user: str, comment: str = "") -> Any:
        return self.post(f"/v1/promotions/{request_id}/approve", user, {"comment": comment})

    def close(self) -> None:
        """Release the app's database connections."""
        self.ctx.db.dispose()


class FlakyGateway(MlflowGateway):
    """The real gateway, with a switch that makes alias moves fail like an MLflow outage."""

    fail_set_alias = 0

    def set_alias(self, name: str, alias: str, version: int) -> None:
        from mlops.errors import RegistryUnavailable

        if self.fail_set_alias > 0:
            self.fail_set_alias -= 1
            raise RegistryUnavailable(f"MLflow at {self.tracking_uri} is unreachable (outage).")
        super().set_alias(name, alias, version)


def server_app(
    database_url: str, policy: Path, tracking_uri: str, name: str, clock: Clock, **settings: Any
) -> Any:
    """The app of the ``server`` fixture: the background loops off, no UI, the MLflow
    gateway that can fake an outage; ``settings`` are more or other ``RegistrySettings``."""
    config = {
        "database_url": database_url,
        "policy_path": policy,
        "tracking_uri": tracking_uri,
        "reconcile_interval": 0,
        "ui": False,
        "governed_models": f"{name}*",  # the session's MLflow store is shared by many tests
    }
    config |= settings
    return create_app(RegistrySettings(**config), clock=clock, gateway=FlakyGateway(tracking_uri))


def make_server(
    database_url: str, policy: Path, mlflow_model: MlflowModel, name: str, **settings: Any
) -> Server:
    """A :class:`Server` over ``policy`` (see :func:`server_app`) holding a token for every
    test user; the caller closes it. ``settings`` are more or other ``RegistrySettings``."""
    clock = Clock()
    app = server_app(database_url, policy, mlflow_model.tracking_uri, name, clock, **settings)
    srv = Server(TestClient(app), clock, mlflow_model)
    with app.state.ctx.db.session() as s:
        for user, roles in USERS.items():
            srv.tokens[user] = create_token(s, user, roles).token
    return srv


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """More ``RegistrySettings`` for the ``server`` fixture: a module that needs other
    options overrides this fixture (and ``policy_file`` for another policy)."""
    return {}


@pytest.fixture
def server(
    database_url: str,
    policy_file: Path,
    mlflow_model: MlflowModel,
    name: str,
    server_settings: dict[str, Any],
) -> Iterator[Server]:
    srv = make_server(database_url, policy_file, mlflow_model, name, **server_settings)
    yield srv
    srv.close()


@pytest.fixture
def name() -> str:
    return f"srv-{uuid.uuid4().hex[:10]}"


#: a promotion ladder: production only for a version that held staging for 2s
LADDER = """
version: 1
targets:
  staging:
    checks: {suites: [iris_train]}
    approvals: {count: 0}
    rollback: {roles: [approver, admin]}
  production:
    protected: true
    checks: {suites: [iris_train], smoke_test: true}
    approvals: {count: 2, roles: [approver, admin], ttl: 1h}
    requires: {held: staging, for: 2s}
"""


@pytest.fixture
def ladder(
    database_url: str, tmp_path: Path, mlflow_model: MlflowModel, name: str
) -> Iterator[Server]:
    """A server under ``LADDER`` (production needs the version to have held staging 2s)."""
    policy = tmp_path / "promotion-policy.yaml"
    policy.write_text(LADDER)
    srv = make_server(database_url, policy, mlflow_model, name)
    yield srv
    srv.close()
