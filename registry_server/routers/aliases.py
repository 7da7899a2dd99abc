"""``/v1/aliases``: current holder (the hot read path), history, rollback."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mlops.errors import AliasNotFound
from registry_server.deps import AuthorizeDep, CallerDep, ContextDep
from registry_server.schemas import NO_NUL, AliasHistory, AliasOut, CommentIn, error_responses
from registry_server.services import aliases

Name = Annotated[str, Path(pattern=NO_NUL)]

router = APIRouter(
    dependencies=[AuthorizeDep],
    prefix="/v1/aliases",
    tags=["aliases"],
    responses=error_responses(401, 403, 404, 409, 422, 503),
)


@router.get("/{model}/{alias}", response_model=AliasOut, responses={404: {}})
async def get_alias(model: Name, alias: Name, request: Request) -> Response:
    """The version holding ``alias`` now, from the journal (no MLflow call, no auth)."""
    body = request.app.state.alias_reader.current(model, alias)
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/{model}/{alias}/history", response_model=AliasHistory)
def alias_history(model: Name, alias: Name, ctx: ContextDep) -> dict:
    """Every version that held the alias, newest first."""
    return aliases.history(ctx.db, model, alias)


@router.post("/{model}/{alias}/rollback", response_model=AliasOut)
def rollback_alias(
    model: Name, alias: Name, ctx: ContextDep, caller: CallerDep, body: CommentIn | None = None
) -> dict:
    """Move the alias back to its previous holder (roles from the policy's rollback rule)."""
    return aliases.rollback(ctx, caller, model, alias, comment=(body or CommentIn()).comment)


class AliasFastPath:
    """ASGI middleware answering ``GET /v1/aliases/{model}/{alias}`` before routing.

    The same answer as :func:`get_alias` (which stays the documented route), without the
    router, dependency resolution and response validation: this read is the one clients
    poll, so it costs one indexed query and one ``orjson.dumps``.
    """

    def __init__(self, app: ASGIApp, reader: aliases.AliasReader) -> None:
        self.app = app
        self.reader = reader

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(_PREFIX):
                parts = path[len(_PREFIX) :].split("/")
                if len(parts) == 2 and all(parts):
                    await self._answer(parts[0], parts[1], send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, model: str, alias: str, send: Send) -> None:
        try:
            status, body = 200, orjson.dumps(self.reader.current(model, alias))
        except AliasNotFound as exc:
            status, body = 404, orjson.dumps(exc.to_dict())
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


_PREFIX = "/v1/aliases/"

__all__ = ["AliasFastPath", "router"]
