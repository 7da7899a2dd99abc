"""The app factory, health, error bodies for unknown routes, auth and validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from registry_server import create_app
from registry_server.db.engine import Database
from registry_server.settings import RegistrySettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    tmp = tmp_path_factory.mktemp("reg")
    settings = RegistrySettings(
        database_url=f"sqlite:///{tmp / 'registry.db'}",
        policy_path=ROOT / "promotion-policy.yaml",
        tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
        admin_token="admin-secret",
        reconcile_interval=0,
        session_secret="basics-session-secret",
    )
    return TestClient(create_app(settings))


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["revision"] == ready.json()["head"] == Database.head_revision()
    assert ready.json()["mlflow"] == "ok" and ready.json()["attention"] == []


def test_unknown_route_has_our_error_body(client: TestClient) -> None:
    res = client.get("/v1/nothing-here")
    assert res.status_code == 404
    assert res.json()["code"] == "not_found"
    assert "/v1/nothing-here" in res.json()["message"]


def test_no_token_and_bad_token_are_401(client: TestClient) -> None:
    res = client.get("/v1/me")
    assert res.status_code == 401
    assert res.json()["code"] == "unauthenticated"
    res = client.get("/v1/me", headers={"Authorization": "Bearer wrong"})
    assert res.status_code == 401
    assert "unknown or revoked" in res.json()["message"]


def test_validation_errors_use_our_body(client: TestClient) -> None:
    res = client.post(
        "/v1/tokens",
        json={"user": "ann", "roles": ["boss"]},
        headers={"Authorization": "Bearer admin-secret"},
    )
    assert res.status_code == 422
    body = res.json()
    assert body["code"] == "invalid_request"
    assert "body.roles.0" in body["message"]
    assert body["hint"]


def test_alias_read_of_unknown_alias_is_404_with_our_body(client: TestClient) -> None:
    res = client.get("/v1/aliases/no-such-model/production")
    assert res.status_code == 404
    assert res.json()["code"] == "alias_not_found"
    assert "'no-such-model'" in res.json()["message"]
    assert "/v1/aliases/{model}/{alias}" in client.get("/openapi.json").json()["paths"]


def test_body_that_is_not_json_is_invalid_request(client: TestClient) -> None:
    res = client.post(
        "/v1/tokens",
        content=b"\xff{not json",
        headers={"Authorization": "Bearer admin-secret", "Content-Type": "application/json"},
    )
    assert res.status_code == 422
    assert res.json()["code"] == "invalid_request"
    assert "error parsing the body" in res.json()["message"]


def test_out_of_range_request_id_is_invalid_request(client: TestClient) -> None:
    res = client.get(f"/v1/promotions/{2**63}")
    assert res.status_code == 422
    assert "path.request_id" in res.json()["message"]


def test_readyz_reports_a_schema_behind_head(client: TestClient) -> None:
    from sqlalchemy import text

    engine = client.app.state.ctx.db.engine
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    try:
        res = client.get("/readyz")
        assert res.status_code == 503
        body = res.json()
        assert (body["status"], body["revision"], body["head"]) == (
            "unavailable",
            "0000",
            Database.head_revision(),
        )
    finally:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE alembic_version SET version_num = :v"),
                {"v": Database.head_revision()},
            )
    assert client.get("/readyz").status_code == 200


def test_reviewer_pages_are_mounted_outside_the_api(client: TestClient) -> None:
    page = client.get("/ui/login")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert not [p for p in client.get("/openapi.json").json()["paths"] if p.startswith("/ui")]
