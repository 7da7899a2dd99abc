"""FastAPI dependencies as ``Annotated`` aliases: the server context and the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from registry_server.services.auth import authenticate
from registry_server.services.context import Caller, ServerContext

__all__ = ["CallerDep", "ContextDep"]


def _context(request: Request) -> ServerContext:
    return request.app.state.ctx


def _caller(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <token>")] = None,
) -> Caller:
    ctx: ServerContext = request.app.state.ctx
    with ctx.db.read_sessions() as session:
        return authenticate(session, authorization)


ContextDep = Annotated[ServerContext, Depends(_context)]
CallerDep = Annotated[Caller, Depends(_caller)]
