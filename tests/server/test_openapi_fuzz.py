"""Property-based calls generated from our OpenAPI schema: no input makes the server fail
with a 5xx, every status is documented, every error is our ``{"code", "message", "hint"}``
body, and schema-valid input is never refused as invalid. Each operation gets
``WITH_TOKEN`` cases with the admin token (so they reach the handlers) and
``WITHOUT_TOKEN`` cases without one: over 1,000 cases in all, derandomized so every run
generates the same ones."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from registry_server.app import create_app
from registry_server.settings import RegistrySettings

ROOT = Path(__file__).resolve().parents[2]
WITH_TOKEN = 100
WITHOUT_TOKEN = 25
CASES: dict[str, int] = {"with_token": 0, "without_token": 0, "failures": 0}


def _app():  # type: ignore[no-untyped-def]
    tmp = Path(tempfile.mkdtemp(prefix="mlops-fuzz-"))
    return create_app(
        RegistrySettings(
            database_url=f"sqlite:///{tmp / 'registry.db'}",
            policy_path=ROOT / "promotion-policy.yaml",
            tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
            admin_token="fuzz-admin",
            reconcile_interval=0,
            webhook_interval=0,
            ui=False,
        )
    )


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


def _schema_valid_is_accepted(case, response) -> None:  # type: ignore[no-untyped-def]
    """What the schema calls valid the server does not refuse as invalid (422): NUL in
    text, integral floats as versions, targets outside the policy are all in the schema.
    The webhook URL's own rules (which hosts may be called) are documented with them, and
    so is the dry-run's policy text, whose validity is the answer it gives, and how the
    lineage route's parameters name the data (md5, or path and rev)."""
    if response.status_code != 422 or not case.meta.generation.mode.is_positive:
        return
    body = response.json()
    if case.operation.label == "POST /v1/webhooks" and (
        "body.url" in body["message"] or body["code"] == "webhook_target_refused"
    ):
        return  # which hosts a webhook may call is decided at resolve time, not by the schema
    if case.operation.label == "POST /v1/policy/dry-run" and body["code"] == "policy_error":
        return  # whether the text is a valid policy is what the dry-run judges, key by key
    if case.operation.label == "GET /v1/lineage/affected" and body["code"] == "invalid_dataset_ref":
        return  # md5, or path and rev together: a rule across parameters, in the description
    raise AssertionError(f"schema-valid input refused: {case.operation.label}: {body}")


def _check(case, kind: str) -> None:  # type: ignore[no-untyped-def]
    CASES[kind] += 1
    response = case.call()
    try:
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
        if kind == "with_token":
            _schema_valid_is_accepted(case, response)
        if response.status_code >= 400:
            body = response.json()
            assert {"code", "message", "hint"} <= set(body), body
            assert all(isinstance(body[k], str) and body[k] for k in ("code", "message"))
    except AssertionError:
        CASES["failures"] += 1
        raise


@schema.parametrize()
@settings(
    max_examples=WITH_TOKEN,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_with_admin_token(case) -> None:  # type: ignore[no-untyped-def]
    case.headers = {**(case.headers or {}), "Authorization": "Bearer fuzz-admin"}
    _check(case, "with_token")


@schema.parametrize()
@settings(
    max_examples=WITHOUT_TOKEN,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_without_token(case) -> None:  # type: ignore[no-untyped-def]
    headers = dict(case.headers or {})
    headers.pop("Authorization", None)
    case.headers = headers
    _check(case, "without_token")
