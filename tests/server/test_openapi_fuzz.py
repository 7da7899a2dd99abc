"""Property-based calls generated from our OpenAPI schema: no input makes the server fail
with a 5xx, every status is documented, and every error is our ``{"code", "message",
"hint"}`` body."""

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


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_documented_statuses(case) -> None:  # type: ignore[no-untyped-def]
    case.headers = {**(case.headers or {}), "Authorization": "Bearer fuzz-admin"}
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
    if response.status_code >= 400:
        body = response.json()
        assert {"code", "message", "hint"} <= set(body), body
