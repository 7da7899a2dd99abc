"""Findings of an outsider's attack on the gate (curl, MlflowClient, schemathesis), on
SQLite and PostgreSQL: superseding someone else's request, evidence edited in place,
unbounded page ids, tokens and server locations echoed in errors, incomplete ``Allow``
headers, and input the server refuses that its OpenAPI schema called valid."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from registry_server.app import create_app, reconcile_once
from registry_server.redact import PLACEHOLDER, locations, redact
from registry_server.settings import RegistrySettings
from tests.conftest import free_port
from tests.server.conftest import MlflowModel, Server, canonical, evidence_bundle


def _new_version(server: Server, name: str) -> tuple[int, str]:
    version = server.model.register(name)
    return version, server.model.record(name, version)


def _request(server: Server, name: str, user: str) -> Any:
    version, digest = _new_version(server, name)
    return server.request(name, version, digest, user=user)


def _events(server: Server, action: str, name: str) -> list[dict]:
    items = server.client.get("/v1/audit?limit=1000", headers=server.h("root")).json()["items"]
    return [e for e in items if e["action"] == action and e["payload"].get("model") == name]


def _state(server: Server, rid: int) -> str:
    return server.client.get(f"/v1/promotions/{rid}").json()["state"]


# --- superseding -----------------------------------------------------------------------------
def test_another_requester_cannot_supersede_a_pending_request(server: Server, name: str) -> None:
    rita = _request(server, name, "rita").json()["id"]
    res = _request(server, name, "dan")
    assert res.status_code == 409, res.json()
    body = res.json()
    assert body["code"] == "conflict"
    assert body["message"].startswith(f"Request {rita} of 'rita' to move {name!r}")
    assert "may not supersede it" in body["message"]
    assert f"POST /v1/promotions/{rita}/cancel" in body["hint"]
    assert _state(server, rita) == "pending"
    page = server.client.get(f"/v1/promotions?model={name}").json()
    assert page["total"] == 1 and not _events(server, "superseded", name)


def test_the_requester_and_an_admin_may_supersede(server: Server, name: str) -> None:
    first = _request(server, name, "rita").json()["id"]
    second = _request(server, name, "rita").json()["id"]
    assert _state(server, first) == "superseded"
    third = _request(server, name, "root")
    assert third.status_code == 201, third.json()
    assert _state(server, second) == "superseded" and third.json()["state"] == "pending"
    actors = [e["actor"] for e in _events(server, "superseded", name)]
    assert sorted(actors) == ["rita", "root"]


# --- evidence edited in place ----------------------------------------------------------------
def _edit_in_place(model: MlflowModel, name: str, version: int, digest: str) -> None:
    """Rewrite the evidence artifact at its recorded path; the digest tag stays as it was."""
    bundle = evidence_bundle(name, version, model.run_id, accuracy=0.99)
    path = f"mlops/evidence/{digest}.json"
    model.client().log_text(model.run_id, canonical(bundle).decode(), path)


def test_evidence_edited_in_place_is_refused_and_audited_on_approval(
    server: Server, name: str
) -> None:
    version, digest = _new_version(server, name)
    rid = server.request(name, version, digest).json()["id"]
    _edit_in_place(server.model, name, version, digest)
    res = server.approve(rid, "ann")
    assert res.status_code == 409, res.json()
    assert res.json()["code"] == "evidence_mismatch"
    assert "but the version's tag says" in res.json()["message"]
    (event,) = _events(server, "evidence_tampered", name)
    assert event["actor"] == "ann"
    assert event["payload"]["version"] == version
    assert "hashes to" in event["payload"]["reason"]
    assert server.client.get(f"/v1/promotions/{rid}").json()["approvals"] == []
    verify = server.client.get("/v1/audit/verify", headers=server.h("root")).json()
    assert verify["ok"] is True


def test_evidence_edited_in_place_is_refused_and_audited_on_request(
    server: Server, name: str
) -> None:
    version, digest = _new_version(server, name)
    _edit_in_place(server.model, name, version, digest)
    res = server.request(name, version, digest)
    assert res.status_code == 409, res.json()
    assert res.json()["code"] == "evidence_mismatch"
    (event,) = _events(server, "evidence_tampered", name)
    assert event["actor"] == "rita"
    assert server.client.get(f"/v1/promotions?model={name}").json()["total"] == 0


def test_evidence_edited_while_the_alias_move_waits_is_audited_by_the_server(
    server: Server, name: str
) -> None:
    version, digest = _new_version(server, name)
    rid = server.request(name, version, digest).json()["id"]
    server.approve(rid, "ann")
    server.ctx.gateway.fail_set_alias = 1  # MLflow down when the quorum is reached
    assert server.approve(rid, "bob").json()["state"] == "approved"
    _edit_in_place(server.model, name, version, digest)
    server.clock.advance(seconds=60)
    reconcile_once(server.ctx)
    (event,) = _events(server, "evidence_tampered", name)
    assert event["actor"] == "system" and event["payload"]["version"] == version
    assert server.model.client().get_registered_model(name).aliases == {}
    assert _state(server, rid) != "promoted"


@pytest.mark.parametrize("path", ["../escape.json", "mlops/../../escape.json", "/etc/hostname"])
def test_an_evidence_path_outside_the_run_is_refused_without_reading_it(
    server: Server, name: str, path: str
) -> None:
    """The version's tag names where its evidence is; the server reads only inside the
    run's artifacts, whatever the tag says."""
    version, digest = _new_version(server, name)
    client = server.model.client()
    client.set_model_version_tag(name, str(version), "mlops.evidence.path", path)
    res = server.request(name, version, digest)
    assert res.status_code == 422, res.json()
    assert res.json()["code"] == "evidence_error"
    assert "is not a plain relative path" in res.json()["message"]
    assert server.client.get(f"/v1/promotions?model={name}").json()["total"] == 0


# --- tokens and server locations never echoed ------------------------------------------------
@pytest.mark.parametrize("shape", ["{token}", "Token {token}", "Basic {token}", "{token} x"])
def test_a_token_sent_without_bearer_is_not_echoed(server: Server, shape: str) -> None:
    token = server.tokens["root"]
    res = server.client.get("/v1/tokens", headers={"Authorization": shape.format(token=token)})
    assert res.status_code == 401
    assert res.json()["code"] == "unauthenticated"
    assert res.json()["message"] == "The Authorization header must be 'Bearer <token>'."
    assert token not in res.text and token[:8] not in res.text


def test_unknown_version_error_does_not_name_the_tracking_uri(server: Server, name: str) -> None:
    body = {"model": name, "version": 7, "target": "production", "evidence_digest": "0" * 64}
    res = server.post("/v1/promotions", "rita", body)
    assert res.status_code == 404, res.json()
    assert res.json()["message"] == f"Model {name!r} has no version 7 in MLflow."
    _assert_no_location(res.text, server.model.tracking_uri)


def test_missing_evidence_artifact_error_does_not_name_server_paths(
    server: Server, name: str
) -> None:
    version = server.model.register(name)
    client = server.model.client()
    client.set_model_version_tag(name, str(version), "mlops.evidence.digest", "a" * 64)
    client.set_model_version_tag(name, str(version), "mlops.evidence.path", "mlops/nowhere.json")
    res = server.request(name, version, "a" * 64)
    assert res.status_code == 422, res.json()
    assert res.json()["message"].startswith("Cannot download evidence 'mlops/nowhere.json'")
    _assert_no_location(res.text, server.model.tracking_uri)


def test_unreachable_mlflow_error_does_not_name_its_uri(
    database_url: str, policy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    settings = RegistrySettings(
        database_url=database_url,
        policy_path=policy_file,
        tracking_uri=uri,
        reconcile_interval=0,
        webhook_interval=0,
        ui=False,
        admin_token="hardening-admin",
    )
    app = create_app(settings)
    try:
        client = TestClient(app)
        body = {"model": "m", "version": 1, "target": "production", "evidence_digest": "0" * 64}
        res = client.post(
            "/v1/promotions", json=body, headers={"Authorization": "Bearer hardening-admin"}
        )
        assert res.status_code == 503, res.json()
        assert res.json()["code"] == "registry_unavailable"
        _assert_no_location(res.text, uri)
    finally:
        app.state.ctx.db.dispose()


def _assert_no_location(text: str, tracking_uri: str) -> None:
    for value in locations(tracking_uri):
        assert value not in text, (value, text)
    assert not re.search(r"/tmp/|/home/|sqlite:|file:", text), text


def test_redact_hides_uris_their_paths_and_directories() -> None:
    hidden = locations("sqlite:////srv/mlflow/mlflow.db", "http://mlflow.internal:5000")
    text = (
        "MLflow at sqlite:////srv/mlflow/mlflow.db failed; cannot open "
        "/srv/mlflow/artifacts/1/x.json; GET http://mlflow.internal:5000/api/2.0 refused"
    )
    assert redact(text, hidden) == (
        f"MLflow at {PLACEHOLDER} failed; cannot open {PLACEHOLDER}/artifacts/1/x.json; "
        f"GET {PLACEHOLDER}/api/2.0 refused"
    )
    assert redact("see /v1/promotions/3/cancel", hidden) == "see /v1/promotions/3/cancel"


# --- 405 and the page's ids ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/v1/promotions", {"GET", "POST"}),
        ("/v1/tokens", {"GET", "POST"}),
        ("/v1/webhooks", {"GET", "POST"}),
        ("/v1/promotions/1", {"GET"}),
        ("/v1/promotions/1/approve", {"POST"}),
    ],
)
def test_405_allow_header_lists_every_method_of_the_path(
    server: Server, path: str, methods: set[str]
) -> None:
    res = server.client.request("PATCH", path, headers=server.h("root"))
    assert res.status_code == 405
    assert {m.strip() for m in res.headers["allow"].split(",")} == methods
    assert res.json()["code"] == "method_not_allowed"
    assert res.json()["message"].startswith(f"Method PATCH is not allowed on {path} (allowed: ")


@pytest.mark.parametrize("rid", ["99999999999999999999", "2147483648", "0", "-1"])
def test_request_page_bounds_its_id_as_the_api_does(
    database_url: str, policy_file: Path, mlflow_model: MlflowModel, rid: str
) -> None:
    from tests.web.conftest import issue_tokens, web_app

    app = web_app(database_url, policy_file, mlflow_model.tracking_uri)
    try:
        client = TestClient(app)
        tokens = issue_tokens(app)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/ui/login").text)
        assert csrf is not None
        form = {"token": tokens["ann"], "csrf_token": csrf.group(1), "next": "/ui/requests"}
        assert client.post("/ui/login", data=form, follow_redirects=False).status_code == 303
        page = client.get(f"/ui/requests/{rid}")
        assert page.status_code == 422, page.text[:500]
        assert "invalid_request" in page.text or "not valid" in page.text
        api = client.get(f"/v1/promotions/{rid}")
        assert api.status_code == 422 and api.json()["code"] == "invalid_request"
    finally:
        app.state.ctx.db.dispose()


# --- what the server refuses is in its schema ------------------------------------------------
def test_schema_describes_nul_user_names_and_policy_targets(server: Server) -> None:
    schema = server.client.get("/openapi.json").json()
    comps = schema["components"]["schemas"]
    assert comps["PromotionIn"]["properties"]["model"]["pattern"] == "^[^\\x00]*$"
    assert comps["PromotionIn"]["properties"]["target"]["enum"] == ["production", "staging"]
    assert comps["CommentIn"]["properties"]["comment"]["pattern"] == "^[^\\x00]*$"
    assert comps["TokenIn"]["properties"]["user"]["pattern"].startswith("^[A-Za-z0-9]")
    rollback = schema["paths"]["/v1/aliases/{model}/{alias}/rollback"]["post"]["parameters"]
    alias = next(p for p in rollback if p["name"] == "alias")
    assert alias["schema"]["enum"] == ["production", "staging"]
    listing = schema["paths"]["/v1/promotions"]["get"]["parameters"]
    model = next(p for p in listing if p["name"] == "model")
    assert model["schema"]["anyOf"][0]["pattern"] == "^[^\\x00]*$"


@pytest.mark.parametrize("version", [1.0, 3.0])
def test_integral_float_version_is_the_json_integer(
    server: Server, name: str, version: float
) -> None:
    body = {"model": name, "version": version, "target": "production", "evidence_digest": "0" * 64}
    assert json.dumps(body).count(f'"version": {version!r}') == 1  # sent as 1.0, not 1
    res = server.post("/v1/promotions", "rita", body)
    assert res.status_code == 404, res.json()  # validated as an integer, then looked up
    assert res.json()["code"] == "model_version_not_found"


@pytest.mark.parametrize("version", [1.5, "1", True])
def test_non_integer_versions_are_refused(server: Server, name: str, version: object) -> None:
    body = {"model": name, "version": version, "target": "production", "evidence_digest": "0" * 64}
    res = server.post("/v1/promotions", "rita", body)
    assert res.status_code == 422 and res.json()["code"] == "invalid_request"
    assert "body.version" in res.json()["message"]


def test_nul_in_text_is_refused_as_the_schema_says(server: Server, name: str) -> None:
    body = {
        "model": f"{name}\x00",
        "version": 1,
        "target": "production",
        "evidence_digest": "0" * 64,
    }
    res = server.post("/v1/promotions", "rita", body)
    assert res.status_code == 422 and "body.model" in res.json()["message"]
    rid = _request(server, name, "rita").json()["id"]
    res = server.approve(rid, "ann", "ok\x00")
    assert res.status_code == 422 and "body.comment" in res.json()["message"]
    assert server.client.get(f"/v1/promotions/{rid}").json()["approvals"] == []
