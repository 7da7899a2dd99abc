"""FastAPI dependencies as ``Annotated`` aliases: the server context and the caller.

Every API router depends on :func:`authorize`, which applies the permissions table
(:mod:`registry_server.permissions`) before the handler runs. Both are ``async``: a public
read without a token costs no trip to the thread pool; a token is looked up (in the
database, every time: a revoked token is refused at once) in the pool. :func:`read` runs
the busiest reads in a few threads of their own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from mlops.errors import PermissionDenied
from registry_server.permissions import access_for
from registry_server.services.auth import authenticate
from registry_server.services.context import Caller, ServerContext

__all__ = ["CallerDep", "ContextDep", "authorize", "read"]

T = TypeVar("T")


async def _context(request: Request) -> ServerContext:
    return request.app.state.ctx


def _authenticate(request: Request, authorization: str | None) -> Caller:
    cached = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    ctx: ServerContext = request.app.state.ctx
    with ctx.db.read_sessions() as session:
        caller = authenticate(session, authorization)
    request.state.caller = caller
    return caller


async def authorize(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <token>")] = None,
) -> None:
    """Apply the permissions table to this route: token needed? one of these roles?

    A token sent to a public route must be valid too: a caller who sends the wrong one
    hears so instead of silently reading as anonymous.
    """
    route = request.scope.get("route")
    access = access_for(request.method, getattr(route, "path", request.url.path))
    if not access.token:
        if authorization is not None:  # a public read with a wrong token is still refused
            await run_in_threadpool(_authenticate, request, authorization)
        return
    caller = await run_in_threadpool(_authenticate, request, authorization)
    if access.roles is not None and not caller.has_any(access.roles):
        where = f"{request.method} {getattr(route, 'path', request.url.path)}"
        who = (
            f"User {caller.user!r} is not an admin"
            if access.roles == ("admin",)
            else f"User {caller.user!r} with roles {list(caller.roles)} may not call {where}"
        )
        raise PermissionDenied(
            f"{who}; {where} needs one of {list(access.roles)}.",
            hint="Ask an admin for a token with the right role (POST /v1/tokens).",
        )


async def read(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a thread of the worker's read pool.

    The busiest reads (a page of requests, one request) are CPU-bound: given the shared
    pool, a worker under load ran a dozen of them at once, each waiting its turn for the
    interpreter, and the slowest answer took twice as long. They share a few threads of
    their own (``read_threads``) instead, which leaves the shared pool to the writes that
    wait on MLflow.
    """
    state = request.app.state
    limiter = getattr(state, "read_limiter", None)
    if limiter is None:  # made in the worker's event loop, on first use
        limiter = state.read_limiter = anyio.CapacityLimiter(state.read_threads)
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=limiter)


def _caller(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <token>")] = None,
) -> Caller:
    return _authenticate(request, authorization)


ContextDep = Annotated[ServerContext, Depends(_context)]
CallerDep = Annotated[Caller, Depends(_caller)]
AuthorizeDep = Depends(authorize)
