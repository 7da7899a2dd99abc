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
    Set ``https_only`` behind TLS to mark the cookie ``Secure``.

    Example:
        >>> mount(app, settings, secret_key="change-me")   # doctest: +SKIP
    """
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.middleware.sessions import SessionMiddleware

    from mlops.errors import MlopsError
    from registry_server.web._session import session_secret
    from registry_server.web.routes import router

    ui = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
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
    app.mount(prefix, ui, name="ui")
    return ui


async def _error_page(request: Request, exc: MlopsError) -> Response:
    from fastapi.responses import RedirectResponse

    from registry_server.errors import status_for
    from registry_server.web._session import SignInRequired
    from registry_server.web.routes import render

    if isinstance(exc, SignInRequired) and request.method == "GET":
        target = quote(str(exc.details.get("next", "")), safe="/")
        return RedirectResponse(f"{request.app.state.prefix}/login?next={target}", 303)
    status = status_for(exc)
    context = {"status": status, "code": exc.code, "message": exc.message, "hint": exc.hint}
    return render(request, "error.html", context, status_code=status)


async def _http_error_page(request: Request, exc: Exception) -> Response:
    from registry_server.web.routes import render

    status = getattr(exc, "status_code", 500)
    context = {
        "status": status,
        "code": "not_found" if status == 404 else "http_error",
        "message": f"No page {request.url.path}." if status == 404 else str(exc),
        "hint": "Start from the list of requests.",
    }
    return render(request, "error.html", context, status_code=status)
