"""Authorisation matrix over every route, token hygiene, hostile inputs."""

from __future__ import annotations

import hmac
import json
import logging
import re
from urllib.parse import quote

import pytest
from sqlalchemy import inspect, text

from registry_server.permissions import PERMISSIONS
from registry_server.services import auth
from tests.server.conftest import Server
from tests.server.test_recovery import _request

IDENTITIES = ("none", "bad", "requester", "approver", "admin")
USER_OF = {"requester": "rita", "approver": "ann", "admin": "root"}


def _routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    from fastapi.routing import iter_route_contexts

    found = []
    for route in iter_route_contexts(app.routes):  # included routers flattened
        methods = getattr(route, "methods", None)
        if methods:
            found += [(m, route.path) for m in sorted(methods) if m != "HEAD"]
    return found


def _headers(server: Server, who: str) -> dict[str, str]:
    if who == "none":
        return {}
    if who == "bad":
        return {"Authorization": "Bearer not-a-real-token"}
    return server.h(USER_OF[who])


def _expected_roles(server: Server, key: str) -> set[str] | None:
    access = PERMISSIONS[key]
    if not access.token:
        return None
    if access.policy in {"approvals", "rollback"}:
        tp = server.ctx.policy.targets["production"]
        return set(getattr(tp, access.policy).roles)
    if access.policy == "owner":
        return {"requester", "admin"}  # the fixture's requester owns the request
    return set(access.roles) if access.roles is not None else set(IDENTITIES[2:])


def test_every_route_is_in_the_permissions_table(server: Server) -> None:
    declared = {f"{m} {p}" for m, p in _routes(server.client.app)}
    assert declared == set(PERMISSIONS), declared ^ set(PERMISSIONS)


def test_authorisation_matrix(server: Server, name: str) -> None:
    _, version = _request(server, name)
    digest = server.model.record(name, version)
    body_for = {
        "POST /v1/promotions": {
            "model": name,
            "version": version,
            "target": "production",
            "evidence_digest": digest,
        },
        "POST /v1/tokens": {"user": "zed", "roles": ["approver"]},
        "POST /v1/webhooks": {"url": "http://127.0.0.1:9/hook", "events": ["promoted"]},
        "POST /v1/policy/dry-run": {"policy": "version: 1\ntargets: {staging: {}}\n"},
    }
    seen = []
    for method, path in _routes(server.client.app):
        key = f"{method} {path}"
        allowed = _expected_roles(server, key)
        for who in IDENTITIES:
            rid = _request(server, name)[0] if "{request_id}" in path else 1
            url = (
                path.replace("{request_id}", str(rid))
                .replace("{model}", name)
                .replace("{alias}", "production")
                .replace("{token_id}", "nope")
                .replace("{webhook_id}", "nope")
                .replace("{delivery_id}", "nope")
                .replace("{digest}", "00000000")
            )
            res = server.client.request(
                method, url, headers=_headers(server, who), json=body_for.get(key)
            )
            code = res.status_code
            seen.append((key, who, code))
            if key == "POST /v1/promotions" and code == 201:  # only its owner may supersede it
                server.post(f"/v1/promotions/{res.json()['id']}/cancel", "root")
            if allowed is None and who == "bad" and path.startswith("/v1/"):
                # a public read with a wrong token is refused, not served as anonymous
                assert code == 401 and res.json()["code"] == "unauthenticated", (key, who)
            elif allowed is None:
                assert code not in (401, 403), (key, who, code, res.text)
            elif who in ("none", "bad"):
                assert code == 401 and res.json()["code"] == "unauthenticated", (key, who)
            elif who in allowed:
                assert code not in (401, 403), (key, who, code, res.text)
            else:
                assert code == 403 and res.json()["code"] == "forbidden", (key, who, code)
    assert len(seen) == len(PERMISSIONS) * len(IDENTITIES)


def test_permissions_table_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for key, access in PERMISSIONS.items():
        method, path = key.split(" ", 1)
        row = f"| `{method}` | `{path}` | {access.describe()} |"
        assert row in doc, row


def test_tokens_are_never_stored_or_logged_in_clear(
    server: Server, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    issued = server.post("/v1/tokens", "root", {"user": "zoe", "roles": ["approver"]}).json()
    secret = issued["token"]
    rid, _ = _request(server, name)
    zoe = {"Authorization": f"Bearer {secret}"}
    assert server.client.post(f"/v1/promotions/{rid}/approve", headers=zoe).status_code == 200
    everything = [secret, *server.tokens.values()]
    engine = server.ctx.db.engine
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            dump = json.dumps(
                [list(map(str, r)) for r in conn.execute(text(f"SELECT * FROM {table}"))]
            )
            assert not any(t in dump for t in everything), table
    assert not any(t in caplog.text for t in everything)
    assert re.search(r"[0-9a-f]{64}", str(auth.hash_token(secret)))


def test_tokens_are_compared_in_constant_time(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert server.client.get("/v1/me", headers=server.h("ann")).status_code == 200
    assert calls == [(auth.hash_token(server.tokens["ann"]),) * 2]


# --- hostile inputs --------------------------------------------------------------------------
def _error_body(res) -> dict:  # type: ignore[no-untyped-def]
    body = res.json()
    assert {"code", "message", "hint"} <= set(body), body
    return body


def test_oversized_body_is_413_with_our_body(server: Server) -> None:
    big = b'{"comment": "' + b"x" * (1024 * 1024) + b'"}'
    res = server.client.post(
        "/v1/promotions/1/approve",
        content=big,
        headers={**server.h("ann"), "Content-Type": "application/json"},
    )
    assert res.status_code == 413
    assert _error_body(res)["code"] == "payload_too_large"
    assert "1048576 bytes" in res.json()["message"]

    def chunks():  # no Content-Length: read up to the limit, then refused
        for _ in range(40):
            yield b"y" * 65536

    res = server.client.post("/v1/promotions/1/approve", content=chunks(), headers=server.h("ann"))
    assert res.status_code == 413 and _error_body(res)["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[1,2", b'{"model": }', b"\xff\xfe\x00", b"null", b'"text"', b"{}" * 1000],
)
def test_malformed_json_is_invalid_request(server: Server, raw: bytes) -> None:
    res = server.client.post(
        "/v1/promotions",
        content=raw,
        headers={**server.h("rita"), "Content-Type": "application/json"},
    )
    assert res.status_code == 422, res.text
    assert _error_body(res)["code"] == "invalid_request"


@pytest.mark.parametrize("version", [-1, 0, 2**31, 2**63, 10**400, 1e308, "1e308", "NaN", True])
def test_negative_and_huge_numbers(server: Server, version: object) -> None:
    body = {"model": "m", "version": version, "target": "production", "evidence_digest": "a" * 64}
    raw = (
        json.dumps(body)
        if not isinstance(version, int) or version < 10**300
        else (
            '{"model": "m", "version": ' + str(version) + ', "target": "production", '
            '"evidence_digest": "' + "a" * 64 + '"}'
        )
    )
    res = server.client.post(
        "/v1/promotions",
        content=raw,
        headers={**server.h("rita"), "Content-Type": "application/json"},
    )
    assert res.status_code == 422, res.text
    assert _error_body(res)["code"] == "invalid_request"
    for rid in ("-1", "0", str(2**63), "1e308", "9" * 400):
        res = server.client.get(f"/v1/promotions/{rid}")
        assert res.status_code == 422 and _error_body(res)["code"] == "invalid_request"


@pytest.mark.parametrize(
    "model",
    [
        "modèle-ünïcødé-模型-🚀",
        "m" * 5000,
        "x'; DROP TABLE promotion_requests; --",
        "' OR '1'='1",
        "a\u0000b",
        "../../etc/passwd",
        "%00%27",
    ],
)
def test_unicode_long_and_sql_like_names(server: Server, model: str) -> None:
    body = {"model": model, "version": 1, "target": "production", "evidence_digest": "a" * 64}
    res = server.post("/v1/promotions", "rita", body)
    assert res.status_code in (404, 422), res.text
    assert _error_body(res)["code"] in {"model_version_not_found", "invalid_request"}
    quoted = quote(model, safe="")
    for path in (f"/v1/aliases/{quoted}/production", f"/v1/aliases/{quoted}/production/history"):
        res = server.client.get(path)
        assert res.status_code in (200, 404, 422), res.text
        if res.status_code != 200:
            _error_body(res)
    listed = server.client.get("/v1/promotions", params={"model": model})
    assert listed.status_code in (200, 422)
    if listed.status_code == 200:
        assert listed.json()["total"] == 0
    with server.ctx.db.engine.connect() as conn:  # the tables are all still there
        assert conn.execute(text("SELECT count(*) FROM promotion_requests")).scalar() == 0


def test_nul_in_comments_tokens_and_queries_is_invalid_request(server: Server, name: str) -> None:
    rid, _ = _request(server, name)
    res = server.approve(rid, "ann", comment="ok\u0000then")
    assert res.status_code == 422 and "NUL" in _error_body(res)["message"]
    res = server.post("/v1/tokens", "root", {"user": "z\u0000", "roles": ["approver"]})
    assert res.status_code == 422 and _error_body(res)["code"] == "invalid_request"
    res = server.client.get("/v1/promotions", params={"model": "a\u0000b"})
    assert res.status_code == 422 and "NUL" in _error_body(res)["message"]
    assert server.client.get(f"/v1/promotions/{rid}").json()["approvals"] == []
