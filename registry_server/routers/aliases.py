"""``/v1/aliases``: current holder (the hot read path), history, rollback."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response

from registry_server.deps import CallerDep, ContextDep
from registry_server.schemas import AliasHistory, AliasOut, CommentIn
from registry_server.services import aliases

router = APIRouter(prefix="/v1/aliases", tags=["aliases"])


@router.get("/{model}/{alias}", response_model=AliasOut, responses={404: {}})
async def get_alias(model: str, alias: str, request: Request) -> Response:
    """The version holding ``alias`` now, from the journal (no MLflow call, no auth)."""
    body = aliases.current(request.app.state.ctx.db, model, alias)
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/{model}/{alias}/history", response_model=AliasHistory)
def alias_history(model: str, alias: str, ctx: ContextDep) -> dict:
    """Every version that held the alias, newest first."""
    return aliases.history(ctx.db, model, alias)


@router.post("/{model}/{alias}/rollback", response_model=AliasOut)
def rollback_alias(
    model: str, alias: str, ctx: ContextDep, caller: CallerDep, body: CommentIn | None = None
) -> dict:
    """Move the alias back to its previous holder (roles from the policy's rollback rule)."""
    return aliases.rollback(ctx, caller, model, alias, comment=(body or CommentIn()).comment)


__all__ = ["router"]
