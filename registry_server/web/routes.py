"""The reviewer pages under ``/ui``: sign in, requests, evidence, decisions, aliases, audit.

Every decision calls the same service function as its REST route, with the same
:class:`~registry_server.services.context.Caller`, so the gate rules live in one place.
Every form post carries the session's CSRF token.

Example:
    >>> from registry_server.web.routes import router
    >>> sorted({r.path for r in router.routes})[:2]
    ['/', '/aliases/{model}/{alias}']
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from mlops.client import STATES as _STATES
from mlops.errors import AuthenticationError
from registry_server.schemas import MAX_INT
from registry_server.services import aliases, lineage, policies, promotions
from registry_server.services.context import Caller, ServerContext
from registry_server.web import _audit, _queries
from registry_server.web._session import (
    SignInRequired,
    caller_for,
    check_csrf,
    new_csrf_token,
    sign_in,
)

__all__ = ["optional_caller", "render", "router", "templates"]

router = APIRouter()
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


RequestId = Annotated[int, PathParam(ge=1, le=MAX_INT, description="Promotion request id.")]


def _ctx(request: Request) -> ServerContext:
    return request.app.state.parent.state.ctx


def _csrf(request: Request) -> str:
    if "csrf" not in request.session:
        request.session["csrf"] = new_csrf_token()
    return request.session["csrf"]


def _caller(request: Request) -> Caller:
    with _ctx(request).db.read_sessions() as s:
        caller = caller_for(s, request.session.get("th"))
    if caller is None:
        request.session.pop("th", None)
        raise SignInRequired("Sign in to see this page.", next=request.url.path)
    return caller


def optional_caller(request: Request) -> Caller | None:
    """The signed-in caller, or ``None`` (for pages that work either way).

    Example:
        >>> optional_caller(request)            # doctest: +SKIP
        Caller(user='ann', roles=('approver',))
    """
    if "session" not in request.scope or not request.session.get("th"):
        return None
    with _ctx(request).db.read_sessions() as s:
        return caller_for(s, request.session.get("th"))


def _checked(request: Request, csrf_token: Annotated[str, Form()] = "") -> None:
    check_csrf(request.session, csrf_token)


ContextDep = Annotated[ServerContext, Depends(_ctx)]
CallerDep = Annotated[Caller, Depends(_caller)]
CsrfDep = Annotated[None, Depends(_checked)]
CommentField = Annotated[str, Form(max_length=4000)]


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    caller: Caller | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render ``name`` with the caller, the CSRF token and any flash message.

    Example:
        >>> render(request, "audit.html", {"verify": v, "events": []}, caller=c)  # doctest: +SKIP
    """
    base = {
        "caller": caller,
        "csrf_token": _csrf(request),
        "flash": request.session.pop("flash", None),
        "ui": request.app.state.prefix,
    }
    return templates.TemplateResponse(
        request, name, base | (context or {}), status_code=status_code, headers=PAGE_HEADERS
    )


def _back(request: Request, path: str, flash: str | None = None) -> RedirectResponse:
    if flash:
        request.session["flash"] = flash
    return RedirectResponse(request.app.state.prefix + path, status_code=303)


# --- sign in / out -------------------------------------------------------------------------
def _safe_next(request: Request, target: str | None) -> str:
    prefix = request.app.state.prefix
    if target and target.startswith(prefix + "/") and "//" not in target and "\\" not in target:
        return target
    return prefix + "/requests"


@router.get("/", include_in_schema=False)
def home(request: Request) -> RedirectResponse:
    """The pending requests."""
    return _back(request, "/requests")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    """The sign-in form (a registry token)."""
    return render(request, "login.html", {"next": _safe_next(request, next), "error": None})


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    ctx: ContextDep,
    _csrf_ok: CsrfDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Check the token with the auth service and start a fresh session."""
    try:
        with ctx.db.read_sessions() as s:
            caller, token_hash = sign_in(s, token)
    except AuthenticationError as exc:
        context = {"next": _safe_next(request, next), "error": exc}
        return render(request, "login.html", context, status_code=401)
    request.session.clear()
    request.session.update({"th": token_hash, "csrf": new_csrf_token()})
    request.session["flash"] = f"Signed in as {caller.user} ({', '.join(caller.roles)})."
    return RedirectResponse(_safe_next(request, next), status_code=303)


@router.post("/logout")
def logout(request: Request, _csrf_ok: CsrfDep) -> RedirectResponse:
    """End the session."""
    request.session.clear()
    return _back(request, "/login", "Signed out.")


# --- requests ------------------------------------------------------------------------------
@router.get("/requests", response_class=HTMLResponse)
def requests_list(
    request: Request,
    ctx: ContextDep,
    caller: CallerDep,
    state: Annotated[str, Query(pattern="^(all|" + "|".join(_STATES) + ")$")] = "pending",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HTMLResponse:
    """Requests in one state (pending by default), newest first, a page at a time."""
    page = _queries.pending_page(ctx, state=None if state == "all" else state, offset=offset)
    context = {"page": page, "state": state, "states": ("all", *_STATES)}
    return render(request, "requests.html", context, caller=caller)


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_detail(
    request: Request, request_id: RequestId, ctx: ContextDep, caller: CallerDep
) -> HTMLResponse:
    """One request with its evidence, verdict, approvals and the decision form."""
    ui = request.app.state.mlflow_ui_url
    context = _queries.request_page(ctx, caller, request_id, mlflow_ui=ui)
    return render(request, "request.html", context, caller=caller)


@router.post("/requests/{request_id}/approve")
def approve(
    request: Request,
    request_id: RequestId,
    ctx: ContextDep,
    caller: CallerDep,
    _csrf_ok: CsrfDep,
    comment: CommentField = "",
) -> RedirectResponse:
    """Approve through :func:`registry_server.services.promotions.approve`."""
    done = promotions.approve(ctx, caller, request_id, comment=comment)
    flash = f"Approved request {request_id}: now {done['state']}"
    quorum = done["quorum"]
    return _back(
        request, f"/requests/{request_id}", f"{flash} ({quorum['have']} of {quorum['need']})."
    )


@router.post("/requests/{request_id}/reject")
def reject(
    request: Request,
    request_id: RequestId,
    ctx: ContextDep,
    caller: CallerDep,
    _csrf_ok: CsrfDep,
    comment: CommentField = "",
) -> RedirectResponse:
    """Reject through :func:`registry_server.services.promotions.reject`."""
    promotions.reject(ctx, caller, request_id, comment=comment)
    return _back(request, f"/requests/{request_id}", f"Rejected request {request_id}.")


@router.post("/requests/{request_id}/cancel")
def cancel(
    request: Request, request_id: RequestId, ctx: ContextDep, caller: CallerDep, _csrf_ok: CsrfDep
) -> RedirectResponse:
    """Cancel through :func:`registry_server.services.promotions.cancel`."""
    promotions.cancel(ctx, caller, request_id)
    return _back(request, f"/requests/{request_id}", f"Cancelled request {request_id}.")


@router.get("/requests/{request_id}/data-docs/{suite}")
def data_docs(request_id: RequestId, suite: str, ctx: ContextDep, caller: CallerDep) -> Response:
    """The suite's Data Docs page from MLflow, sandboxed (no access to this site's cookies)."""
    req = promotions.get(ctx, request_id)
    body = _queries.data_docs(ctx, req["model"], req["version"], suite)
    headers = {"Content-Security-Policy": "sandbox allow-scripts", "Cache-Control": "no-store"}
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


# --- aliases and audit ---------------------------------------------------------------------
@router.get("/aliases/{model}/{alias}", response_class=HTMLResponse)
def alias_history(
    request: Request, model: str, alias: str, ctx: ContextDep, caller: CallerDep
) -> HTMLResponse:
    """Who held the alias when, and a rollback button for those allowed to use it."""
    context = _queries.alias_page(ctx, caller, model, alias)
    return render(request, "alias.html", context, caller=caller)


@router.post("/aliases/{model}/{alias}/rollback")
def rollback(
    request: Request,
    model: str,
    alias: str,
    ctx: ContextDep,
    caller: CallerDep,
    _csrf_ok: CsrfDep,
    comment: CommentField = "",
) -> RedirectResponse:
    """Roll back through :func:`registry_server.services.aliases.rollback`."""
    now = aliases.rollback(ctx, caller, model, alias, comment=comment)
    path = f"/aliases/{quote(model, safe='')}/{quote(alias, safe='')}"
    return _back(request, path, f"Rolled back {model}@{alias} to version {now['version']}.")


@router.get("/policy", response_class=HTMLResponse)
def policy_history(request: Request, ctx: ContextDep, caller: CallerDep) -> HTMLResponse:
    """Every policy the server ran under, newest first, and whether the file is refused."""
    return render(request, "policy.html", {"history": policies.history(ctx)}, caller=caller)


@router.get("/policy/{digest}", response_class=HTMLResponse)
def policy_version(
    request: Request,
    digest: Annotated[str, PathParam(pattern=r"^[0-9a-f]{8,64}$")],
    ctx: ContextDep,
    caller: CallerDep,
) -> HTMLResponse:
    """One kept policy's YAML text."""
    kept = policies.get_version(ctx, digest)
    return render(request, "policy_version.html", {"kept": kept}, caller=caller)


@router.get("/lineage/affected", response_class=HTMLResponse)
def lineage_affected(
    request: Request,
    ctx: ContextDep,
    caller: CallerDep,
    md5: Annotated[str, Query(max_length=1000)] = "",
    path: Annotated[str, Query(max_length=1000)] = "",
    rev: Annotated[str, Query(max_length=1000)] = "",
) -> HTMLResponse:
    """Affected by data: the versions that used a dataset, the protected aliases they hold,
    the rollback plans (:func:`registry_server.services.lineage.affected`)."""
    radius = lineage.affected(ctx, md5=md5 or None, path=path or None, rev=rev or None)
    return render(request, "affected.html", radius, caller=caller)


@router.get("/audit", response_class=HTMLResponse)
def audit_log(
    request: Request,
    ctx: ContextDep,
    caller: CallerDep,
    model: Annotated[str, Query(max_length=200)] = "",
    actor: Annotated[str, Query(max_length=200)] = "",
    action: Annotated[str, Query(pattern="^[a-z_]{0,60}$")] = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    """The audit chain's verification and its events, newest first, filtered and paged."""
    page = _audit.events_page(
        ctx, model=model.strip(), actor=actor.strip(), action=action, before=before
    )
    ui, mlflow_ui = request.app.state.prefix, request.app.state.mlflow_ui_url
    for event in page["events"]:
        event["line"] = _audit.sentence(event, ui=ui, mlflow_ui=mlflow_ui)
        event["kind"] = _audit.KINDS.get(event["action"], "event")
    return render(request, "audit.html", page, caller=caller)
