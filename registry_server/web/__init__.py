"""Web pages for reviewers, served by the registry server under ``/ui``.

Server-rendered Jinja2 templates and plain forms (no JavaScript build). The pages run in
their own sub-application, so the signed session cookie (``SessionMiddleware``) and the
HTML error pages apply to ``/ui`` only; the REST API keeps bearer tokens and JSON errors.

Example:
    >>> from registry_server.app import create_app
    >>> from registry_server.web import mount
    >>> app = create_app(settings)          # doctest: +SKIP
    >>> mount(app, settings)                # doctest: +SKIP  (pages at /ui/requests)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    from mlops.errors import MlopsError

__all__ = ["COOKIE", "mount"]

COOKIE = "mlops_ui"
_STATIC = Path(__file__).parent / "static"


def mount(
    app: FastAPI,
    settings: object = None,
    *,
    prefix: str = "/ui",
    secret_key: str | None = None,
    https_only: bool = False,
) -> FastAPI:
    """Serve the reviewer pages under ``prefix`` of ``app``; return the pages' sub-app.

    The cookie signing key is ``secret_key``, else ``$MLOPS_REGISTRY_SESSION_SECRET``,
    else a ``session_secret`` setting, else a key file created once in the mlops home.
    Set ``https_only`` behind TLS to mark the cookie ``Secure``. Mounting twice on the
    same ``app`` returns the pages already mounted (``create_app`` may have done it).

    Example:
        >>> mount(app, settings, secret_key="change-me")   # doctest: +SKIP
    """
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.middleware.sessions import SessionMiddleware

    from mlops.errors import MlopsError
    from registry_server.web._session import session_secret
    from registry_server.web.routes import router

    existing = getattr(app.state, "ui", None)
    if existing is not None:
        return existing
    ui = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ui = ui
    ui.state.parent = app
    ui.state.prefix = prefix
    ui.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(secret_key, settings=settings),
        session_cookie=COOKIE,
        path=prefix,
        same_site="lax",
        https_only=https_only,
        max_age=12 * 3600,
    )
    ui.mount("/static", StaticFiles(directory=_STATIC), name="static")
    ui.include_router(router)
    ui.add_exception_handler(MlopsError, _error_page)  # type: ignore[arg-type]
    ui.add_exception_handler(StarletteHTTPException, _http_error_page)  # type: ignore[arg-type]
    ui.add_exception_handler(RequestValidationError, _invalid_page)  # type: ignore[arg-type]
    app.mount(prefix, ui, name="ui")
    return ui


def _page(request: Request, status: int, code: str, message: str, hint: str) -> Response:
    """The HTML error page, with the signed-in user's header if there is one."""
    from registry_server.web.routes import optional_caller, render

    context = {"status": status, "code": code, "message": message, "hint": hint}
    return render(
        request, "error.html", context, caller=optional_caller(request), status_code=status
    )


async def _error_page(request: Request, exc: MlopsError) -> Response:
    from fastapi.responses import RedirectResponse

    from registry_server.errors import public_body, status_for
    from registry_server.web._session import SignInRequired

    if isinstance(exc, SignInRequired) and request.method == "GET":
        target = quote(str(exc.details.get("next", "")), safe="/")
        return RedirectResponse(f"{request.app.state.prefix}/login?next={target}", 303)
    body = public_body(request, exc)
    return _page(request, status_for(exc), exc.code, body["message"], body["hint"])


async def _http_error_page(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    if status == 404:
        message = f"No page {request.method} {request.url.path}."
    else:
        message = f"{request.method} {request.url.path}: {getattr(exc, 'detail', exc)}"
    code = "not_found" if status == 404 else "http_error"
    return _page(request, status, code, message, "Start from the list of requests.")


async def _invalid_page(request: Request, exc: Exception) -> Response:
    errors = getattr(exc, "errors", list)()
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors
    )
    return _page(
        request,
        422,
        "invalid_request",
        f"The request is not valid: {problems}.",
        "Use the links and forms of the pages; check the value named above.",
    )
