"""``/v1/audit``: the append-only, hash-chained event log and its verification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from registry_server.deps import AuthorizeDep, CallerDep, ContextDep
from registry_server.schemas import (
    MAX_INT,
    AuditCheckpointOut,
    AuditPage,
    AuditVerify,
    CheckpointIn,
    error_responses,
)
from registry_server.services import audit, checkpoints

router = APIRouter(
    dependencies=[AuthorizeDep],
    prefix="/v1/audit",
    tags=["audit"],
    responses=error_responses(401, 422),
)


@router.get("", response_model=AuditPage)
def list_audit(
    ctx: ContextDep,
    caller: CallerDep,
    after: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    """Events with id greater than ``after``, oldest first."""
    with ctx.db.read_sessions() as s:
        items = audit.list_events(s, after=after, limit=limit)
    return {"items": items, "next_after": items[-1]["id"] if items else None}


@router.get("/verify", response_model=AuditVerify)
def verify_audit(
    ctx: ContextDep,
    caller: CallerDep,
    incremental: Annotated[
        bool, Query(description="Start from the newest valid signed checkpoint.")
    ] = False,
) -> dict:
    """Recompute the hash chain and check it against the newest signed checkpoint; names
    the first event that does not match, or says events were deleted."""
    with ctx.db.read_sessions() as s:
        return checkpoints.verify(s, ctx.signing_key, incremental=incremental)


@router.post("/verify", response_model=AuditVerify)
def verify_audit_against(body: CheckpointIn, ctx: ContextDep, caller: CallerDep) -> dict:
    """Check the chain against a signed checkpoint kept outside the server."""
    with ctx.db.read_sessions() as s:
        return checkpoints.verify(s, ctx.signing_key, checkpoint=body.envelope)


@router.get("/checkpoint", response_model=AuditCheckpointOut, responses=error_responses(404))
def newest_checkpoint(ctx: ContextDep, caller: CallerDep) -> dict:
    """The newest signed checkpoint of the chain head, to keep elsewhere."""
    from mlops.errors import NotFoundError

    with ctx.db.read_sessions() as s:
        row = checkpoints.newest_row(s)
    if row is None:
        raise NotFoundError(
            "No audit checkpoint is signed yet: one is signed at each promotion or rollback.",
            hint="Promote a version (POST /v1/promotions), then GET /v1/audit/checkpoint.",
        )
    return checkpoints.row_to_dict(row)


__all__ = ["router"]
