"""``/v1/tokens`` (admin) and ``/v1/me``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from mlops.errors import PermissionDenied
from registry_server.deps import AuthorizeDep, CallerDep, ContextDep
from registry_server.schemas import (
    NO_NUL,
    MeOut,
    TokenIn,
    TokenIssued,
    TokenList,
    error_responses,
)
from registry_server.services import audit, auth
from registry_server.services.context import Caller

TokenId = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL)]

router = APIRouter(
    dependencies=[AuthorizeDep],
    prefix="/v1",
    tags=["tokens"],
    responses=error_responses(401, 403, 404, 422),
)


def _admin(caller: Caller) -> None:
    if not caller.is_admin:
        raise PermissionDenied(f"User {caller.user!r} is not an admin; tokens need role admin.")


@router.post("/tokens", status_code=201, response_model=TokenIssued)
def create_token(body: TokenIn, ctx: ContextDep, caller: CallerDep) -> dict:
    """Issue a token for a user with roles (admin only); the token is shown once."""
    _admin(caller)
    with ctx.db.session() as s:
        issued = auth.create_token(s, body.user, body.roles)
        payload = {"token_id": issued.id, "user": issued.user, "roles": list(issued.roles)}
        audit.append(s, actor=caller.user, action="token_created", payload=payload, at=ctx.now())
    return issued.to_dict()


@router.get("/tokens", response_model=TokenList)
def list_tokens(ctx: ContextDep, caller: CallerDep) -> dict:
    """Every token without its secret (admin only)."""
    _admin(caller)
    with ctx.db.read_sessions() as s:
        return {"items": auth.list_tokens(s)}


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: TokenId, ctx: ContextDep, caller: CallerDep) -> None:
    """Revoke a token (admin only)."""
    _admin(caller)
    with ctx.db.session() as s:
        auth.revoke_token(s, token_id)
        payload = {"token_id": token_id}
        audit.append(s, actor=caller.user, action="token_revoked", payload=payload, at=ctx.now())


@router.get("/me", response_model=MeOut)
def me(caller: CallerDep) -> dict:
    """Who the bearer token belongs to."""
    return {"user": caller.user, "roles": list(caller.roles)}


__all__ = ["router"]
