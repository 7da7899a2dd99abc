"""``/v1/keys``: the public key the server signs decisions and audit checkpoints with."""

from __future__ import annotations

from fastapi import APIRouter

from registry_server.deps import AuthorizeDep, ContextDep
from registry_server.schemas import KeysOut, error_responses

router = APIRouter(
    dependencies=[AuthorizeDep], prefix="/v1", tags=["keys"], responses=error_responses(401)
)


@router.get("/keys", response_model=KeysOut)
def public_key(ctx: ContextDep) -> dict:
    """The Ed25519 public key (PEM) and its key id; `mlops verify --key FILE` needs only it."""
    key = ctx.signing_key
    return {"key_id": key.key_id, "public_key": key.public_pem}


__all__ = ["router"]
