"""Property-based calls generated from our OpenAPI schema: no input makes the server fail
with a 5xx, every status is documented, every error is our ``{"code", "message", "hint"}``
body, and schema-valid input is never refused as invalid. Each operation gets
``WITH_TOKEN`` cases with the admin token (so they reach the handlers) and
``WITHOUT_TOKEN`` cases without one: over 1,000 cases in all, derandomized so every run
generates the same ones."""

from __future__ import annotations

import re
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


def test_every_text_a_request_body_takes_says_it_refuses_nul() -> None:
    """The server refuses NUL in any text it is sent (``_In._no_nul``); the schema says so
    for each such field, so a client generating from it never sends what is refused. The
    fuzzer once drew a NUL for the webhook secret rotation's ``secret``, which lacked it."""
    doc = schema.raw_schema
    models = doc["components"]["schemas"]

    def refs(node: dict) -> set[str]:  # an optional body is anyOf [model, null]
        own = {node["$ref"].rsplit("/", 1)[1]} if "$ref" in node else set()
        return own.union(*(refs(option) for option in node.get("anyOf", ())))

    bodies = {
        name
        for path in doc["paths"].values()
        for op in path.values()
        if isinstance(op, dict)
        for content in (op.get("requestBody") or {}).get("content", {}).values()
        for name in refs(content["schema"])
    }

    def texts(node: dict, where: str) -> list[tuple[str, dict]]:
        if "$ref" in node:
            return texts(models[node["$ref"].rsplit("/", 1)[1]], where)
        found = [(where, node)] if node.get("type") == "string" and "enum" not in node else []
        for key in ("anyOf", "oneOf", "allOf"):
            for i, option in enumerate(node.get(key, ())):
                if "pattern" in node:  # an optional text's pattern sits beside its anyOf
                    option = {"pattern": node["pattern"], **option}
                found += texts(option, f"{where}|{i}")
        for name, prop in node.get("properties", {}).items():
            found += texts(prop, f"{where}.{name}")
        if "items" in node:
            found += texts(node["items"], f"{where}[]")
        return found

    assert {"PromotionIn", "SecretIn", "WebhookIn"} <= bodies, bodies
    fields = [t for body in sorted(bodies) for t in texts(models[body], body)]
    assert len(fields) >= 8, fields
    loose = [where for where, node in fields if "pattern" not in node]
    assert loose == []
    valid = {"PromotionIn.evidence_digest": "0" * 64, "WebhookIn.url": "https://example.org/hook"}
    for where, node in fields:
        text = valid.get(where.split("|")[0], "ann")
        assert re.search(node["pattern"], text), (where, node["pattern"])
        assert not re.search(node["pattern"], f"{text[:-1]}\x00{text[-1]}"), where
