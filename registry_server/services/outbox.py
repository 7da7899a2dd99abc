"""The outbox: alias moves recorded as intents, applied to MLflow, retried with back-off.

Quorum reached -> :func:`record_alias_intent` (same transaction as ``approved``); then
:func:`apply_intents` calls MLflow and, in a second transaction, marks the request
``promoted``, writes the alias journal and the ``promoted`` event. If MLflow fails the
intent stays pending with a back-off; the next call (a request or the background
reconciler, in any worker) finishes it. The second transaction re-checks the intent under
a lock, so concurrent workers produce one ``promoted`` event.

Example:
    >>> apply_intents(ctx)  # number of alias moves completed  # doctest: +SKIP
    1
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.errors import RegistryError
from registry_server.db.models import Outbox, PromotionRequest
from registry_server.services._rows import lock_request, record_event, set_state
from registry_server.services.aliases import move_alias
from registry_server.services.context import ServerContext

__all__ = ["INTENT", "apply_intents", "record_alias_intent"]

INTENT = "alias_intent"
_MAX_BACKOFF = 300.0


def record_alias_intent(s: Session, ctx: ServerContext, actor: str, req: PromotionRequest) -> None:
    """Set ``req`` approved and record the alias move, in the caller's transaction."""
    set_state(ctx, req, "approved")
    payload = {"model": req.model, "alias": req.target, "version": req.version}
    s.add(
        Outbox(
            kind=INTENT,
            request_id=req.id,
            payload=payload,
            state="pending",
            attempts=0,
            next_attempt_at=ctx.now(),
            created_at=ctx.now(),
        )
    )
    record_event(s, ctx, actor, "approved", req)


def apply_intents(ctx: ServerContext, *, request_id: int | None = None) -> int:
    """Move the aliases of pending intents that are due (or of ``request_id``)."""
    with ctx.db.read_sessions() as s:
        stmt = select(Outbox.id).where(Outbox.kind == INTENT, Outbox.state == "pending")
        if request_id is not None:
            stmt = stmt.where(Outbox.request_id == request_id)
        else:
            stmt = stmt.where(Outbox.next_attempt_at <= ctx.now())
        ids = list(s.scalars(stmt.order_by(Outbox.id)))
    return sum(_apply_one(ctx, outbox_id) for outbox_id in ids)


def _apply_one(ctx: ServerContext, outbox_id: int) -> bool:
    with ctx.db.read_sessions() as s:
        intent = s.get(Outbox, outbox_id)
        if intent is None or intent.state != "pending":
            return False
        payload = dict(intent.payload)
    try:
        ctx.gateway.set_alias(payload["model"], payload["alias"], payload["version"])
    except RegistryError as exc:
        _retry_later(ctx, outbox_id, exc)
        return False
    with ctx.db.session() as s:
        stmt = select(Outbox).where(Outbox.id == outbox_id)
        if s.get_bind().dialect.name != "sqlite":
            stmt = stmt.with_for_update()
        intent = s.scalar(stmt)
        if intent is None or intent.state != "pending":
            return False  # another worker finished it
        req = lock_request(s, intent.request_id)
        previous = move_alias(
            s, ctx, model=req.model, alias=req.target, version=req.version, request_id=req.id
        )
        req.previous_version = previous
        set_state(ctx, req, "promoted")
        intent.state, intent.done_at = "done", ctx.now()
        intent.attempts += 1
        record_event(s, ctx, "system", "promoted", req, previous_version=previous)
    return True


def _retry_later(ctx: ServerContext, outbox_id: int, exc: Exception) -> None:
    with ctx.db.session() as s:
        intent = s.get(Outbox, outbox_id)
        intent.attempts += 1
        intent.last_error = str(exc)[:2000]
        delay = min(2.0**intent.attempts, _MAX_BACKOFF)
        intent.next_attempt_at = ctx.now() + timedelta(seconds=delay)
