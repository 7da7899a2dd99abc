"""The registry client against the real server app (``TestClient``) and a real process.

One suite covers client, wire format and server: ``RegistryClient(http=TestClient(app))``.
The server reads evidence from the session's MLflow SQLite store, where each test
registers fresh versions of one real sklearn model under a unique name.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlops.client import (
    AliasHolder,
    InvalidRequest,
    Promotion,
    RegistryClient,
)
from mlops.errors import (
    AliasNotFound,
    AuthenticationError,
    ConflictError,
    EvidenceMismatch,
    NotFoundError,
    PermissionDenied,
    PolicyViolation,
    RegistryUnavailable,
)
from tests import _evidence
from tests._registry import RegistryProcess, start_registry
from tests.conftest import (
    SKLEARN_REQUIREMENTS,
    free_port,
    use_experiment,
)

ADMIN_TOKEN = "admin-" + uuid.uuid4().hex
POLICY = """
version: 1
targets:
  production:
    protected: true
    checks:
      metrics:
        accuracy: {threshold: 0.8}
    approvals: {count: 2, roles: [approver, admin], exclude_requester: true, distinct: true}
    rollback: {roles: [approver, admin]}
  staging:
    approvals: {count: 1}
"""
USERS = {"rita": ["requester"], "ann": ["approver"], "bob": ["approver"]}


# --- fixtures shared with test_cli.py and test_promotion.py -------------------------------
@dataclass(frozen=True)
class TrainedModel:
    """One sklearn model logged to a run; ``new_version`` registers it again with evidence."""

    tracking_uri: str
    run_id: str
    model_uri: str

    def new_version(self, name: str, *, accuracy: float = 0.95) -> tuple[int, str]:
        """Register a version of the model under ``name`` and record evidence for it."""
        from mlflow.tracking import MlflowClient

        from mlops.evidence import Evidence, record

        client = MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)
        if not client.search_registered_models(filter_string=f"name = '{name}'"):
            client.create_registered_model(name)
        mv = client.create_model_version(name, self.model_uri, run_id=self.run_id)
        version = int(mv.version)
        bundle = _evidence.bundle(
            name, version, self.run_id, accuracy=accuracy, validation=False, package=False
        )
        return version, record(Evidence.from_dict(bundle))


@pytest.fixture(scope="session")
def trained(mlflow_home: Path) -> TrainedModel:
    """A logistic regression on iris, logged once per session."""
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    uri = os.environ["MLOPS_TRACKING_URI"]
    mlflow.set_tracking_uri(uri)
    x, y = load_iris(return_X_y=True, as_frame=True)
    use_experiment(uri, "client-tests")
    with mlflow.start_run() as run:
        model = LogisticRegression(max_iter=300).fit(x, y)
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=SKLEARN_REQUIREMENTS)
    return TrainedModel(uri, run.info.run_id, info.model_uri)


@pytest.fixture(scope="session")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("client-policy") / "promotion-policy.yaml"
    path.write_text(POLICY)
    return path


@dataclass(frozen=True)
class Registry:
    """The server app in-process, and one client per user."""

    http: TestClient
    tokens: dict[str, str]
    database_url: str

    def client(self, user: str | None) -> RegistryClient:
        return RegistryClient(http=self.http, token=self.tokens.get(user) if user else None)


@contextlib.contextmanager
def open_registry(workdir: Path, policy_path: Path) -> Iterator[Registry]:
    """``create_app`` on a fresh SQLite DB in ``workdir`` and the session MLflow store,
    with a token for each of :data:`USERS` and ``root`` (admin)."""
    from registry_server import create_app
    from registry_server.settings import RegistrySettings

    db = f"sqlite:///{workdir / 'registry.db'}"
    settings = RegistrySettings(
        database_url=db,
        policy_path=policy_path,
        tracking_uri=os.environ["MLOPS_TRACKING_URI"],
        admin_token=ADMIN_TOKEN,
        reconcile_interval=0,
    )
    with TestClient(create_app(settings)) as http:
        admin = RegistryClient(http=http, token=ADMIN_TOKEN)
        tokens = {"root": ADMIN_TOKEN}
        tokens |= {u: admin.create_token(u, roles).token for u, roles in USERS.items()}
        yield Registry(http, tokens, db)


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, mlflow_home: Path, policy_file: Path
) -> Iterator[Registry]:
    """The server app in-process on a temp SQLite DB, with user tokens."""
    with open_registry(tmp_path_factory.mktemp("registry"), policy_file) as reg:
        yield reg


@pytest.fixture(scope="module")
def server_process(
    tmp_path_factory: pytest.TempPathFactory, mlflow_home: Path, policy_file: Path
) -> Iterator[RegistryProcess]:
    """``mlops server`` as a real process on a free port (SQLite), stopped after the module."""
    server = start_registry(
        tmp_path_factory.mktemp("registry-process"),
        cli=True,
        policy_file=policy_file,
        admin_token=ADMIN_TOKEN,
        reconcile_interval=0,
        timeout=60,
    )
    yield server
    server.stop()


# --- the flow -----------------------------------------------------------------------------
def test_request_approve_and_promote(registry: Registry, trained: TrainedModel, model_name: str):
    from mlflow.tracking import MlflowClient

    version, digest = trained.new_version(model_name)
    p = registry.client("rita").request_promotion(model_name, version, "production", digest)
    assert (p.state, p.requester, p.evidence_digest) == ("pending", "rita", digest)
    assert (p.quorum.have, p.quorum.need) == (0, 2)
    assert p.blocked and p.blocked_by == ("approvals: 0 of 2 required",)
    assert p.verdict_passed is True and any(r.rule == "checks.metrics.accuracy" for r in p.rules)
    assert "Why blocked" in p._repr_html_() and "approvals: 0 of 2" in str(p)

    p = registry.client("ann").approve(p.id, comment="metrics ok")
    assert (p.state, p.quorum.have) == ("pending", 1)
    assert p.approvals[0].user == "ann" and p.approvals[0].counts is True
    p = registry.client("bob").approve(p.id, comment="ship it")
    assert p.state == "promoted" and p.final and not p.blocked and p.blocked_by == ()

    holder = registry.client(None).alias(model_name, "production")
    assert (holder.version, holder.request_id) == (version, p.id)
    uri = trained.tracking_uri
    mv = MlflowClient(uri, registry_uri=uri).get_model_version_by_alias(model_name, "production")
    assert int(mv.version) == version
    assert registry.client("rita").get_promotion(p.id) == p


def test_promotion_round_trips_through_to_dict(
    registry: Registry, trained: TrainedModel, model_name
):
    version, digest = trained.new_version(model_name)
    p = registry.client("rita").request_promotion(model_name, version, "production", digest)
    p = registry.client("ann").approve(p.id, comment="<b>ok</b>")
    wire = registry.http.get(f"/v1/promotions/{p.id}").json()
    assert p.to_dict() == wire and Promotion.from_dict(wire) == p
    assert "&lt;b&gt;ok&lt;/b&gt;" in p._repr_html_() and "<b>ok</b>" not in p._repr_html_()


def test_rollback_and_history(registry: Registry, trained: TrainedModel, model_name: str):
    first, d1 = trained.new_version(model_name)
    second, d2 = trained.new_version(model_name)
    for version, digest in ((first, d1), (second, d2)):
        p = registry.client("rita").request_promotion(model_name, version, "staging", digest)
        assert registry.client("ann").approve(p.id).state == "promoted"
    assert registry.client(None).alias(model_name, "staging").version == second

    back = registry.client("bob").rollback(model_name, "staging", comment="latency")
    assert isinstance(back, AliasHolder) and back.version == first
    moves = registry.client("ann").history(model_name, "staging")
    assert [m.version for m in moves][:3] == [first, second, first]
    assert moves[0].end is None and all(m.end for m in moves[1:])
    assert moves[0].to_dict()["from"] == moves[0].start


def test_cancel_own_request_only(registry: Registry, trained: TrainedModel, model_name: str):
    version, digest = trained.new_version(model_name)
    p = registry.client("rita").request_promotion(model_name, version, "production", digest)
    with pytest.raises(PermissionDenied, match="may not"):
        registry.client("ann").cancel(p.id)
    p = registry.client("rita").cancel(p.id)
    assert p.state == "cancelled" and p.final and not p.blocked
    assert "blocked" not in str(p) and "Why blocked" not in p._repr_html_()
    with pytest.raises(ConflictError, match="cancelled, not pending"):
        registry.client("bob").approve(p.id)


# --- errors: the server's code becomes the same class -------------------------------------
def test_unauthenticated_is_401_authentication_error(registry: Registry, model_name: str):
    with pytest.raises(AuthenticationError, match="needs a bearer token") as info:
        registry.client(None).request_promotion(model_name, 1, "production", "a" * 64)
    assert info.value.details["status"] == 401 and "mlops token create" in info.value.hint
    bad = RegistryClient(http=registry.http, token="not-a-token")
    with pytest.raises(AuthenticationError, match="unknown or revoked"):
        bad.me()


def test_wrong_role_is_403_permission_denied(registry: Registry, trained, model_name: str):
    version, digest = trained.new_version(model_name)
    p = registry.client("rita").request_promotion(model_name, version, "production", digest)
    with pytest.raises(PermissionDenied, match="'rita' with roles \\['requester'\\] may not"):
        registry.client("rita").approve(p.id)
    with pytest.raises(PermissionDenied, match="not an admin"):
        registry.client("ann").tokens()


def test_unknown_request_is_404_not_found(registry: Registry):
    with pytest.raises(NotFoundError, match="No promotion request with id 987654") as info:
        registry.client("ann").get_promotion(987654)
    assert info.value.details["status"] == 404
    with pytest.raises(AliasNotFound, match="Alias 'production' of model 'nobody' has never been"):
        registry.client(None).alias("nobody", "production")


def test_conflicts_are_409(registry: Registry, trained: TrainedModel, model_name: str):
    version, digest = trained.new_version(model_name)
    p = registry.client("rita").request_promotion(model_name, version, "staging", digest)
    registry.client("ann").approve(p.id)
    with pytest.raises(ConflictError, match=f"request {p.id} is promoted, not pending"):
        registry.client("bob").approve(p.id)
    other, _ = trained.new_version(model_name)
    with pytest.raises(EvidenceMismatch, match=f"v{other} has") as info:
        registry.client("rita").request_promotion(model_name, other, "staging", digest)
    assert info.value.details["status"] == 409


def test_policy_and_shape_errors_are_422(registry: Registry, trained, model_name: str):
    version, digest = trained.new_version(model_name, accuracy=0.5)
    with pytest.raises(PolicyViolation, match=r"checks\.metrics\.accuracy: accuracy: 0\.5") as info:
        registry.client("rita").request_promotion(model_name, version, "production", digest)
    assert info.value.details["rules"][0]["rule"] == "checks.metrics.accuracy"
    with pytest.raises(InvalidRequest, match=r"body\.evidence_digest") as info:
        registry.client("rita").request_promotion(model_name, version, "production", "xyz")
    assert info.value.code == "invalid_request" and info.value.details["status"] == 422


def test_unreachable_server_names_url_and_mlops_server():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnavailable, match=f"registry server at '{url}'") as info:
        RegistryClient(url, token="x", timeout=2).health()
    assert "mlops server" in info.value.hint
    assert isinstance(info.value, ConnectionError)


# --- listing, tokens, audit -----------------------------------------------------------------
def test_list_promotions_iterates_pages(registry: Registry, trained: TrainedModel, model_name):
    ids = []
    for _ in range(5):
        version, digest = trained.new_version(model_name)
        ids.append(
            registry.client("rita").request_promotion(model_name, version, "staging", digest).id
        )
    client = registry.client("ann")
    paged = list(client.list_promotions(model=model_name, page_size=2))
    assert [p.id for p in paged] == ids[::-1]
    assert [p.state for p in paged] == ["pending"] + ["superseded"] * 4
    assert [p.id for p in client.list_promotions(model=model_name, state="pending")] == [ids[-1]]
    assert list(client.list_promotions(model=f"{model_name}-none")) == []


def test_list_promotions_follows_keyset_pages_while_requests_arrive(
    registry: Registry, trained: TrainedModel, model_name
):
    """A request opened between two pages neither repeats an item nor hides one (paging by
    offset repeated the last item of the first page)."""
    rita = registry.client("rita")
    ids = []
    for _ in range(5):
        version, digest = trained.new_version(model_name)
        ids.append(rita.request_promotion(model_name, version, "staging", digest).id)
    listing = registry.client("ann").list_promotions(model=model_name, page_size=2)
    seen = [next(listing).id, next(listing).id]
    version, digest = trained.new_version(model_name)
    rita.request_promotion(model_name, version, "staging", digest)
    seen += [p.id for p in listing]
    assert seen == ids[::-1]
    page = registry.http.get(
        "/v1/promotions", params={"model": model_name, "limit": 2, "before": ids[2]}
    ).json()
    assert [p["id"] for p in page["items"]] == [ids[1], ids[0]]
    assert page["next_before"] is None


def test_tokens_me_and_revoke(registry: Registry):
    admin = registry.client("root")
    user = f"carl-{uuid.uuid4().hex[:6]}"
    issued = admin.create_token(user, ["approver"])
    assert issued.token and issued.roles == ("approver",)
    listed = {t.id: t for t in admin.tokens()}
    assert listed[issued.id].user == user and listed[issued.id].token is None
    carl = RegistryClient(http=registry.http, token=issued.token)
    assert (carl.me().user, carl.me().roles) == (user, ("approver",))
    admin.revoke_token(issued.id)
    assert {t.id: t for t in admin.tokens()}[issued.id].revoked is True
    with pytest.raises(AuthenticationError, match="unknown or revoked"):
        carl.me()
    with pytest.raises(NotFoundError, match="No token with id 'nope'"):
        admin.revoke_token("nope")


def test_audit_pages_and_verifies(registry: Registry, trained: TrainedModel, model_name: str):
    version, digest = trained.new_version(model_name)
    p = registry.client("rita").request_promotion(model_name, version, "staging", digest)
    client = registry.client("ann")
    events = client.audit(limit=1000)
    assert any(e.action == "requested" and e.data["payload"]["request_id"] == p.id for e in events)
    later = client.audit(after=events[0].id, limit=2)
    assert [e.id for e in later] == [e.id for e in events[1:3]]
    check = client.verify_audit()
    assert check.ok and check.count == len(events) and str(check).startswith("audit chain ok")


# --- the same client against a real server process -----------------------------------------
def test_real_server_process(server_process: RegistryProcess, trained: TrainedModel, model_name):
    admin = RegistryClient(server_process.url, token=ADMIN_TOKEN)
    assert admin.health() == {"status": "ok"}
    rita = RegistryClient(server_process.url, token=admin.create_token("rita", ["requester"]).token)
    ann = RegistryClient(server_process.url, token=admin.create_token("ann", ["approver"]).token)
    version, digest = trained.new_version(model_name)
    p = rita.request_promotion(model_name, version, "staging", digest)
    assert p.state == "pending" and p.blocked_by == ("approvals: 0 of 1 required",)
    assert ann.approve(p.id, comment="ok").state == "promoted"
    assert ann.alias(model_name, "staging").version == version
    with pytest.raises(ConflictError, match="not pending"):
        ann.reject(p.id, comment="too late")
    assert admin.verify_audit().ok


def test_every_final_state_of_the_server_ends_a_wait():
    # a request ending "stale" (its champion moved) must end Promotion.wait() too
    import typing

    from mlops.cli._review import STATES
    from mlops.client import FINAL_STATES
    from registry_server.schemas import State
    from registry_server.web.routes import _STATES

    server_states = set(typing.get_args(State))

    assert server_states - {"verifying", "pending", "approved"} == FINAL_STATES
    assert set(STATES) == set(_STATES) == server_states
