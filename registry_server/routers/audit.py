"""``/v1/audit``: the append-only, hash-chained event log and its verification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from registry_server.deps import AuthorizeDep, CallerDep, ContextDep
from registry_server.schemas import MAX_INT, AuditPage, AuditVerify, error_responses
from registry_server.services import audit

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
def verify_audit(ctx: ContextDep, caller: CallerDep) -> dict:
    """Recompute the hash chain; names the first event that does not match."""
    with ctx.db.read_sessions() as s:
        return audit.verify(s)


__all__ = ["router"]
