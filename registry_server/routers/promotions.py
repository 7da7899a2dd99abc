"""``/v1/promotions``: create, list, read, cancel, approve, reject.

Every handler runs in a thread, the reads too: a database that is slow or gone must never
stall the event loop, and with it every other request of the worker (``/healthz``
included). The list and one request's view run in the worker's read threads
(:func:`registry_server.deps.read`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from registry_server.deps import AuthorizeDep, CallerDep, ContextDep, read
from registry_server.schemas import (
    MAX_INT,
    NO_NUL,
    AttestationOut,
    CommentIn,
    PromotionIn,
    PromotionOut,
    PromotionPage,
    State,
    error_responses,
    json_response,
)
from registry_server.services import promotions
from registry_server.services.context import ServerContext

RequestId = Annotated[int, Path(ge=1, le=MAX_INT, description="Promotion request id.")]

router = APIRouter(
    dependencies=[AuthorizeDep],
    prefix="/v1/promotions",
    tags=["promotions"],
    responses=error_responses(401, 403, 404, 409, 422, 503),
)


@router.post("", status_code=201, response_model=PromotionOut)
def create_promotion(body: PromotionIn, ctx: ContextDep, caller: CallerDep) -> dict:
    """Request promotion of a version to a target alias; the server checks the gate rules."""
    return promotions.create(
        ctx,
        caller,
        model=body.model,
        version=body.version,
        target=body.target,
        evidence_digest=body.evidence_digest,
    )


@router.get("", response_model=PromotionPage)
async def list_promotions(
    request: Request,
    ctx: ContextDep,
    model: Annotated[str | None, Query(pattern=NO_NUL)] = None,
    target: Annotated[str | None, Query(pattern=NO_NUL)] = None,
    state: State | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_INT, description="Only requests older than this id.")
    ] = None,
) -> Response:
    """Requests, newest first, filtered by model, target and state; page with ``before``
    (the previous page's ``next_before``): each page costs the same however deep."""
    filters = {"model": model, "target": target, "state": state, "before": before}
    return await read(request, _page, ctx, limit=limit, offset=offset, **filters)


def _page(ctx: ServerContext, **query: Any) -> Response:
    return json_response(PromotionPage, promotions.list_requests(ctx, **query))


@router.get("/{request_id}/attestation", response_model=AttestationOut)
def get_attestation(request_id: RequestId, ctx: ContextDep, caller: CallerDep) -> dict:
    """The signed decision of a promoted request: an in-toto Statement in a DSSE envelope."""
    from mlops.errors import NotFoundError
    from registry_server.services import attestations

    with ctx.db.read_sessions() as s:
        row = attestations.for_request(s, request_id)
        if row is None:
            raise NotFoundError(
                f"Promotion request {request_id} has no signed decision: it was not promoted "
                "(yet), or not through this server.",
                hint=f"See its state with GET /v1/promotions/{request_id}.",
            )
        return attestations.to_dict(row)


@router.get("/{request_id}", response_model=PromotionOut)
async def get_promotion(request_id: RequestId, request: Request, ctx: ContextDep) -> Response:
    """One request with its approvals, verdict, quorum and what blocks it."""
    return await read(request, _one, ctx, request_id)


def _one(ctx: ServerContext, request_id: int) -> Response:
    return json_response(PromotionOut, promotions.get(ctx, request_id))


@router.post("/{request_id}/cancel", response_model=PromotionOut)
def cancel_promotion(request_id: RequestId, ctx: ContextDep, caller: CallerDep) -> dict:
    """Cancel a pending request (its requester or an admin)."""
    return promotions.cancel(ctx, caller, request_id)


@router.post("/{request_id}/approve", response_model=PromotionOut)
def approve_promotion(
    request_id: RequestId, ctx: ContextDep, caller: CallerDep, body: CommentIn | None = None
) -> dict:
    """Approve; at quorum the server moves the alias in MLflow."""
    return promotions.approve(ctx, caller, request_id, comment=(body or CommentIn()).comment)


@router.post("/{request_id}/reject", response_model=PromotionOut)
def reject_promotion(
    request_id: RequestId, ctx: ContextDep, caller: CallerDep, body: CommentIn | None = None
) -> dict:
    """Reject a pending request."""
    return promotions.reject(ctx, caller, request_id, comment=(body or CommentIn()).comment)


__all__ = ["router"]
