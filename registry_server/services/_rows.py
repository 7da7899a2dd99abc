"""Row-level helpers shared by the services: lock, read, change state, audit.

Example:
    >>> with ctx.db.session() as s:                      # doctest: +SKIP
    ...     req = lock_request(s, 7)
    ...     set_state(ctx, req, "cancelled")
    >>> with ctx.db.session() as s:                      # doctest: +SKIP
    ...     job = lock_pending_outbox(s, 12)             # None: another worker finished it
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, text
from sqlalchemy.orm import Session

from mlops.errors import NotFoundError
from registry_server.db.models import Outbox, PromotionRequest
from registry_server.services import audit
from registry_server.services.context import ServerContext

__all__ = [
    "lock_pending_outbox",
    "lock_request",
    "lock_target",
    "not_found",
    "record_event",
    "set_state",
]


def not_found(request_id: int) -> NotFoundError:
    """The error for an unknown request id."""
    return NotFoundError(
        f"No promotion request with id {request_id}.",
        hint="List requests with GET /v1/promotions.",
    )


def _for_update(session: Session, stmt: Select) -> Select:
    """``stmt`` locking its rows for this transaction (SQLite: BEGIN IMMEDIATE already)."""
    return stmt if session.get_bind().dialect.name == "sqlite" else stmt.with_for_update()


def lock_request(session: Session, request_id: int) -> PromotionRequest:
    """The request row, locked for this transaction (FOR UPDATE on PostgreSQL)."""
    req = session.scalar(
        _for_update(session, select(PromotionRequest).where(PromotionRequest.id == request_id))
    )
    if req is None:
        raise not_found(request_id)
    return req


def lock_pending_outbox(session: Session, outbox_id: int) -> Outbox | None:
    """The outbox row (an alias move or a verification), locked for this transaction;
    ``None`` when it is gone or no longer pending: another worker recorded it first."""
    row = session.scalar(_for_update(session, select(Outbox).where(Outbox.id == outbox_id)))
    return row if row is not None and row.state == "pending" else None


def lock_target(session: Session, model: str, target: str) -> None:
    """Serialise requests for one model+target (SQLite: BEGIN IMMEDIATE already does)."""
    if session.get_bind().dialect.name == "postgresql":
        key = f"mlops.promotion:{model}:{target}"
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})


def record_event(
    session: Session, ctx: ServerContext, actor: str, action: str, req: Any, **extra: Any
) -> Any:
    """Append an audit event about ``req`` (request id, model, version, target, digest)."""
    payload = {
        "request_id": req.id,
        "model": req.model,
        "version": req.version,
        "target": req.target,
        "evidence_digest": req.evidence_digest,
        "policy_digest": ctx.policy.digest,  # the policy the decision was taken under
        **extra,
    }
    return audit.append(session, actor=actor, action=action, payload=payload, at=ctx.now())


def set_state(ctx: ServerContext, req: PromotionRequest, state: str) -> None:
    """Change the state and touch ``updated_at``."""
    req.state = state
    req.updated_at = ctx.now()
