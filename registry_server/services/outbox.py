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

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from mlops.errors import EvidenceError, EvidenceMismatch, RegistryError
from registry_server.db.models import Outbox, PromotionRequest
from registry_server.services._rows import lock_request, lock_target, record_event, set_state
from registry_server.services.aliases import move_alias
from registry_server.services.context import ServerContext
from registry_server.services.evidence import checked_evidence
from registry_server.services.faults import crash_here

__all__ = ["INTENT", "apply_intents", "pending_aliases", "record_alias_intent"]

INTENT = "alias_intent"
_MAX_BACKOFF = 300.0
_GRACE = 2.0  # seconds the background pass leaves an untried intent to its own request


def record_alias_intent(s: Session, ctx: ServerContext, actor: str, req: PromotionRequest) -> None:
    """Set ``req`` approved and record the alias move, in the caller's transaction."""
    set_state(ctx, req, "approved")
    payload = {
        "model": req.model,
        "alias": req.target,
        "version": req.version,
        "evidence_digest": req.evidence_digest,
    }
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
    now = ctx.now()
    with ctx.db.read_sessions() as s:
        stmt = select(Outbox.id).where(
            Outbox.kind == INTENT, Outbox.state == "pending", Outbox.next_attempt_at <= now
        )
        if request_id is not None:
            stmt = stmt.where(Outbox.request_id == request_id)
        else:  # leave a fresh intent to the request that recorded it (it answers "promoted")
            fresh = now - timedelta(seconds=_GRACE)
            stmt = stmt.where(or_(Outbox.attempts > 0, Outbox.created_at <= fresh))
        ids = list(s.scalars(stmt.order_by(Outbox.id)))
    return sum(_apply_one(ctx, outbox_id) for outbox_id in ids)


def _claim(ctx: ServerContext, outbox_id: int) -> dict | None:
    """Take the intent for ``intent_lease`` seconds; ``None`` if another worker holds it.

    The claim is one conditional UPDATE (under the model+alias lock), so of many workers
    exactly one calls MLflow; a worker that dies holding it is replaced after the lease.
    """
    with ctx.db.session() as s:
        payload = s.scalar(select(Outbox.payload).where(Outbox.id == outbox_id))
        if payload is None:
            return None
        lock_target(s, payload["model"], payload["alias"])
        now = ctx.now()
        claimed = s.execute(
            update(Outbox)
            .where(Outbox.id == outbox_id, Outbox.state == "pending", Outbox.next_attempt_at <= now)
            .values(
                next_attempt_at=now + timedelta(seconds=ctx.intent_lease),
                attempts=Outbox.attempts + 1,
            )
        )
        return dict(payload) if claimed.rowcount == 1 else None


def _apply_one(ctx: ServerContext, outbox_id: int) -> bool:
    payload = _claim(ctx, outbox_id)
    if payload is None:
        return False
    try:
        evidence_ok = _evidence_unchanged(ctx, payload)
        if evidence_ok:
            ctx.gateway.set_alias(payload["model"], payload["alias"], payload["version"])
    except (RegistryError, EvidenceError) as exc:
        _retry_later(ctx, outbox_id, exc)
        return False
    if not evidence_ok:
        _void(ctx, outbox_id)
        return False
    crash_here(ctx, "after_mlflow_set")
    done = _finish(ctx, outbox_id)
    crash_here(ctx, "after_final")
    return done


def _evidence_unchanged(ctx: ServerContext, payload: dict) -> bool:
    """Re-read the evidence right before the move: approvals bind to its digest."""
    digest = payload.get("evidence_digest")
    if not digest:
        return True
    try:
        _, current = checked_evidence(ctx, "system", payload["model"], payload["version"])
    except EvidenceMismatch:
        return False
    return current == digest


def _finish(ctx: ServerContext, outbox_id: int) -> bool:
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
        intent.state, intent.done_at, intent.last_error = "done", ctx.now(), None
        record_event(s, ctx, "system", "promoted", req, previous_version=previous)
    return True


def _void(ctx: ServerContext, outbox_id: int) -> None:
    """The evidence changed between quorum and move: nothing moves, the request ends."""
    with ctx.db.session() as s:
        intent = s.get(Outbox, outbox_id)
        if intent is None or intent.state != "pending":
            return
        req = lock_request(s, intent.request_id)
        intent.state, intent.done_at = "void", ctx.now()
        intent.last_error = "evidence changed after the approvals"
        set_state(ctx, req, "cancelled")
        record_event(s, ctx, "system", "evidence_changed", req, at_stage="alias_move")


def _retry_later(ctx: ServerContext, outbox_id: int, exc: Exception) -> None:
    with ctx.db.session() as s:
        intent = s.get(Outbox, outbox_id)
        intent.last_error = str(exc)[:2000]
        delay = min(2.0**intent.attempts, _MAX_BACKOFF)
        intent.next_attempt_at = ctx.now() + timedelta(seconds=delay)


def pending_aliases(s: Session) -> set[tuple[str, str]]:
    """``(model, alias)`` pairs with an alias move not finished yet."""
    stmt = select(Outbox.payload).where(Outbox.kind == INTENT, Outbox.state == "pending")
    return {(p["model"], p["alias"]) for p in s.scalars(stmt)}
