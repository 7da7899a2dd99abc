"""One table from ``mlops.errors`` codes to HTTP statuses, and the handlers using it.

Every error leaves the server as ``{"code", "message", "hint"}`` (plus ``details``),
including FastAPI's own validation errors and unknown routes.

Example:
    >>> from mlops.errors import FreezeWindowError
    >>> status_for(FreezeWindowError("frozen"))
    409
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlops.errors import MlopsError
from registry_server.redact import locations, redact_body

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

__all__ = ["STATUS_BY_CODE", "install_error_handlers", "public_body", "status_for"]

log = logging.getLogger("registry_server")

STATUS_BY_CODE: dict[str, int] = {
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "model_version_not_found": 404,
    "alias_not_found": 404,
    "dataset_not_recorded": 404,
    "conflict": 409,
    "champion_changed": 409,
    "nothing_to_roll_back": 409,
    "alias_holder_missing": 409,
    "evidence_mismatch": 409,
    "evidence_verifying": 409,
    "evidence_unverified": 422,
    "evidence_unverifiable": 422,
    "freeze_window": 409,
    "soak_pending": 409,
    "policy_violation": 422,
    "policy_error": 422,
    "evidence_error": 422,
    "gate_error": 422,
    "invalid_request": 422,
    "invalid_dataset_ref": 422,
    "webhook_target_refused": 422,
    "verification_failed": 422,
    "registry_unavailable": 503,
    "registry_error": 502,
    "internal_error": 500,
}


def status_for(error: MlopsError) -> int:
    """HTTP status of an error: its own code, else the nearest ancestor's, else 500."""
    for cls in type(error).__mro__:
        code = getattr(cls, "code", None)
        if code in STATUS_BY_CODE:
            return STATUS_BY_CODE[code]
    return 500


def _body(code: str, message: str, hint: str, details: dict | None = None) -> dict:
    body = {"code": code, "message": message, "hint": hint}
    if details:
        body["details"] = details
    return body


def public_body(request: Request, exc: MlopsError) -> dict:
    """``exc.to_dict()`` without the server's locations (MLflow URIs, database URL, their
    file paths): any caller reads error bodies; the server log keeps the full message."""
    state = request.app.state
    parent = getattr(state, "parent", None)  # the pages are a sub-application
    ctx = getattr(state, "ctx", None) or getattr(getattr(parent, "state", None), "ctx", None)
    gateway, db = getattr(ctx, "gateway", None), getattr(ctx, "db", None)
    hidden = locations(
        getattr(gateway, "tracking_uri", None),
        getattr(gateway, "registry_uri", None),
        getattr(db, "url", None),
    )
    body = exc.to_dict()
    public = redact_body(body, hidden)
    if public != body:
        log.warning("%s on %s %s: %s", exc.code, request.method, request.url.path, exc.message)
    return public


async def _mlops_error(request: Request, exc: MlopsError) -> JSONResponse:
    return JSONResponse(public_body(request, exc), status_code=status_for(exc))


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        problems.append(f"{where}: {err.get('msg')}")
    body = _body(
        "invalid_request",
        "The request is not valid: " + "; ".join(problems) + ".",
        "Check the fields named above against the API schema at /docs.",
        {"errors": [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]},
    )
    return JSONResponse(body, status_code=422)


def _allowed_methods(request: Request) -> list[str]:
    """The methods of every route whose path matches the request's."""
    from fastapi.routing import iter_route_contexts  # included routers, flattened

    path = request.scope.get("path", request.url.path)
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and route.methods and regex.match(path):
            methods |= set(route.methods)
    return sorted(methods)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        body = _body(
            "not_found",
            f"No route {request.method} {request.url.path}.",
            "See the API at /docs; routes live under /v1.",
        )
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        body = _body(
            "method_not_allowed",
            f"Method {request.method} is not allowed on {request.url.path}"
            + (f" (allowed: {', '.join(allowed)})." if allowed else "."),
            "See the API at /docs for the methods of this route.",
        )
        if allowed:  # every route on this path, not only the first one Starlette tried
            return JSONResponse(body, status_code=405, headers={"Allow": ", ".join(allowed)})
    elif exc.status_code == 400:  # e.g. a body that is not JSON: same answer as bad fields
        body = _body(
            "invalid_request",
            f"The request is not valid: {exc.detail}.",
            "Send a JSON body matching the API schema at /docs.",
        )
        return JSONResponse(body, status_code=422)
    else:
        body = _body("http_error", str(exc.detail), "See the API at /docs.")
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Anything unforeseen: logged with its traceback, answered with our body, never text."""
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    body = _body(
        "internal_error",
        f"The server failed on {request.method} {request.url.path}: {type(exc).__name__}.",
        "Retry; if it persists, check the server log and GET /readyz.",
    )
    return JSONResponse(body, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(MlopsError, _mlops_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
