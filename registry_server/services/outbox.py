"""The outbox: alias moves recorded as intents, applied to MLflow, retried with back-off.

Quorum reached -> :func:`record_alias_intent` (same transaction as ``approved``); then
:func:`apply_intents` calls MLflow and, in a second transaction, marks the request
``promoted``, writes the alias journal and the ``promoted`` event. If MLflow fails the
intent stays pending with a back-off; the next call (a request or the background
reconciler, in any worker) finishes it. The second transaction re-checks the intent under
a lock, so concurrent workers produce one ``promoted`` event.

Right before MLflow and again in the final transaction, a promotion's champion binding is
re-checked against the journal: if the holder moved, nothing moves and the request ends
``stale`` (``champion_changed``). A request opened under another policy than the one in
force is checked under it first, as at each approval: evidence that fails it moves nothing
and ends the request ``cancelled`` (``policy_violation``). Rollbacks
(:func:`record_rollback_intent`) take the same path and move only if the holder they roll
back still holds the alias.

Example:
    >>> apply_intents(ctx)  # number of alias moves completed  # doctest: +SKIP
    1
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from mlops.errors import EvidenceError, EvidenceMismatch, PolicyViolation, RegistryError
from mlops.policy import Policy
from registry_server.db.models import Outbox, PromotionRequest
from registry_server.services import attestations, audit, champion, ladder
from registry_server.services._rows import (
    lock_pending_outbox,
    lock_request,
    lock_target,
    record_event,
    set_state,
)
from registry_server.services.context import ServerContext
from registry_server.services.evidence import checked_evidence
from registry_server.services.faults import crash_here
from registry_server.services.journal import INTENT, holder, move_alias, pending_aliases
from registry_server.services.policies import policy_in_force_violation

__all__ = [
    "INTENT",
    "apply_intents",
    "pending_aliases",
    "record_alias_intent",
    "record_rollback_intent",
    "void_for_rollback",
]

log = logging.getLogger("registry_server")
_GRACE = 2.0  # seconds the background pass leaves an untried intent to its own request


def record_alias_intent(s: Session, ctx: ServerContext, actor: str, req: PromotionRequest) -> None:
    """Set ``req`` approved and record the alias move, in the caller's transaction."""
    set_state(ctx, req, "approved")
    payload = {
        "model": req.model,
        "alias": req.target,
        "version": req.version,
        "evidence_digest": req.evidence_digest,
        "action": "promote",
        "champion": req.champion,
    }
    _add_intent(s, ctx, payload, request_id=req.id)
    record_event(s, ctx, actor, "approved", req)


def record_rollback_intent(s: Session, ctx: ServerContext, payload: dict) -> int:
    """Record a rollback as an alias move, in the caller's transaction; the outbox id.

    ``payload`` names ``model``, ``alias``, ``version`` (the holder to go back to),
    ``from_journal_id`` (the holder being rolled back, which must still hold at the move),
    ``to_request_id``, ``actor`` and ``comment``.
    """
    return _add_intent(s, ctx, {**payload, "action": "rollback"}, request_id=None)


def _add_intent(s: Session, ctx: ServerContext, payload: dict, *, request_id: int | None) -> int:
    intent = Outbox(
        kind=INTENT,
        request_id=request_id,
        payload=payload,
        state="pending",
        attempts=0,
        next_attempt_at=ctx.now(),
        created_at=ctx.now(),
    )
    s.add(intent)
    s.flush()
    return intent.id


def void_for_rollback(s: Session, ctx: ServerContext, model: str, alias: str, why: str) -> None:
    """A rollback is recorded: pending promotions of ``model@alias`` lose their champion."""
    stmt = select(Outbox).where(Outbox.kind == INTENT, Outbox.state == "pending")
    for intent in s.scalars(stmt.order_by(Outbox.id)):
        p = intent.payload
        if (p["model"], p["alias"]) != (model, alias) or intent.request_id is None:
            continue
        intent.state, intent.done_at, intent.last_error = "void", ctx.now(), why
        req = lock_request(s, intent.request_id)
        if req.state == "approved":
            _mark_stale(s, ctx, req, why, at_stage="rollback")


def apply_intents(
    ctx: ServerContext,
    *,
    request_id: int | None = None,
    outbox_id: int | None = None,
    checked: tuple[dict, str] | None = None,
) -> int:
    """Move the aliases of pending intents that are due (or of ``request_id``/``outbox_id``).

    ``checked`` is the evidence (bundle, digest) of ``request_id`` as the caller read it
    from MLflow just now (the approval that reached the quorum): the move then does not
    read it again.
    """
    now = ctx.now()
    with ctx.db.read_sessions() as s:
        stmt = select(Outbox.id).where(
            Outbox.kind == INTENT, Outbox.state == "pending", Outbox.next_attempt_at <= now
        )
        if request_id is not None:
            stmt = stmt.where(Outbox.request_id == request_id)
        elif outbox_id is not None:
            stmt = stmt.where(Outbox.id == outbox_id)
        else:  # leave a fresh intent to the request that recorded it (it answers "promoted")
            fresh = now - timedelta(seconds=_GRACE)
            stmt = stmt.where(or_(Outbox.attempts > 0, Outbox.created_at <= fresh))
        ids = list(s.scalars(stmt.order_by(Outbox.id)))
    fresh = checked if request_id is not None else None
    return sum(_apply_one(ctx, outbox_id, fresh) for outbox_id in ids)


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


def _apply_one(ctx: ServerContext, outbox_id: int, checked: tuple[dict, str] | None) -> bool:
    payload = _claim(ctx, outbox_id)
    if payload is None:
        return False
    if payload.get("action") == "rollback":
        return _apply_rollback(ctx, outbox_id, payload)
    why = _champion_moved(ctx, outbox_id)
    if why is not None:
        _void_stale(ctx, outbox_id, why)
        return False
    model, alias, version = payload["model"], payload["alias"], payload["version"]
    policy = ctx.policy  # one policy for the whole move, even if a reload lands now
    try:
        evidence_ok, bundle = _evidence_unchanged(ctx, payload, checked)
        if evidence_ok and bundle is not None and _refused(ctx, outbox_id, bundle, policy):
            return False
        if evidence_ok:  # the subjects are read before the move: nothing moves unsigned
            prep = attestations.prepare(
                ctx, model, alias, version, bundle, payload.get("evidence_digest")
            )
            ctx.gateway.set_alias(model, alias, version)
    except (RegistryError, EvidenceError) as exc:
        _retry_later(ctx, outbox_id, exc)
        return False
    if not evidence_ok:
        _void(ctx, outbox_id)
        return False
    crash_here(ctx, "after_mlflow_set")
    done, signed = _finish(ctx, outbox_id, prep)
    crash_here(ctx, "after_final")
    _attach(ctx, signed)
    return done


def _attach(ctx: ServerContext, attestation_id: int | None) -> None:
    """Put this move's signed decision on its model version in MLflow now (else: retried).

    Only its own: the others not yet attached are other moves' (maybe being attached by
    another worker right now) or the background pass's to retry.
    """
    if attestation_id is None:  # no move, or no signing key
        return
    try:
        attestations.attach_pending(ctx, attestation_id=attestation_id)
    except Exception:  # the background pass retries; the move itself is done
        log.exception("attaching the signed decision to MLflow failed (retried)")


def _evidence_unchanged(
    ctx: ServerContext, payload: dict, checked: tuple[dict, str] | None
) -> tuple[bool, dict | None]:
    """Re-read the evidence right before the move: approvals bind to its digest.

    ``checked`` (bundle, digest) was read from MLflow by the approval that reached the
    quorum, in this same call, a few milliseconds ago: it stands for the re-read.
    """
    digest = payload.get("evidence_digest")
    if not digest:
        return True, None
    if checked is not None:
        bundle, current = checked
        return current == digest, bundle
    try:
        bundle, current = checked_evidence(ctx, "system", payload["model"], payload["version"])
    except EvidenceMismatch:
        return False, None
    return current == digest, bundle


def _finish(
    ctx: ServerContext, outbox_id: int, prep: attestations.Prepared | None
) -> tuple[bool, int | None]:
    """The move's final transaction: whether it happened, and the id of its signed
    decision (``None`` without a signing key)."""
    with ctx.db.session() as s:
        intent = lock_pending_outbox(s, outbox_id)
        if intent is None:
            return False, None  # another worker finished it
        req = lock_request(s, intent.request_id)
        lock_target(s, req.model, req.target)
        why = champion.moved(s, req, ctx.policy.rules(req.model, req.target))
        if why is not None:  # another move finished between the check and now
            _end_stale(s, ctx, intent, req, why)
            return False, None
        previous = move_alias(
            s, ctx, model=req.model, alias=req.target, version=req.version, request_id=req.id
        )
        req.previous_version = previous
        set_state(ctx, req, "promoted")
        intent.state, intent.done_at, intent.last_error = "done", ctx.now(), None
        signed = attestations.record(
            s, ctx, prep, action="promote", previous=previous, request=req, actor="system"
        )
        record_event(s, ctx, "system", "promoted", req, previous_version=previous)
        if previous is not None and previous != req.version:
            ladder.void_on_leave(s, ctx, req.model, req.target, previous, "promote")
        signed_id = signed.id if signed is not None else None
    return True, signed_id


def _void(ctx: ServerContext, outbox_id: int) -> None:
    """The evidence changed between quorum and move: nothing moves, the request ends."""
    _cancel(ctx, outbox_id, "evidence changed after the approvals", "evidence_changed")


def _refused(ctx: ServerContext, outbox_id: int, bundle: dict, policy: Policy) -> bool:
    """The rule approvals follow, again at the move (a reload may have landed since the
    quorum): a request opened under another policy moves only if its evidence passes the
    policy in force. If not, nothing moves and the request ends, audited."""
    with ctx.db.read_sessions() as s:
        intent = s.get(Outbox, outbox_id)
        req = s.get(PromotionRequest, intent.request_id)
        violation = policy_in_force_violation(req, bundle, policy)
    if violation is None:
        return False
    _cancel(
        ctx,
        outbox_id,
        violation.message[:2000],
        PolicyViolation.code,
        reason=violation.message,
        rules=violation.details["rules"],
        opened_under=req.policy_digest,
        policy_digest=policy.digest,
    )
    return True


def _cancel(ctx: ServerContext, outbox_id: int, why: str, action: str, **extra: Any) -> None:
    """Void the intent and end its request ``cancelled``, audited as ``action``."""
    with ctx.db.session() as s:
        intent = s.get(Outbox, outbox_id)
        if intent is None or intent.state != "pending":
            return
        req = lock_request(s, intent.request_id)
        intent.state, intent.done_at, intent.last_error = "void", ctx.now(), why
        set_state(ctx, req, "cancelled")
        record_event(s, ctx, "system", action, req, at_stage="alias_move", **extra)


def _retry_later(ctx: ServerContext, outbox_id: int, exc: Exception) -> None:
    with ctx.db.session() as s:
        intent = s.get(Outbox, outbox_id)
        intent.last_error = str(exc)[:2000]
        intent.next_attempt_at = ctx.next_retry(intent.attempts)


# --- the champion binding ----------------------------------------------------------------
def _champion_moved(ctx: ServerContext, outbox_id: int) -> str | None:
    """Why the request's champion no longer holds the alias, right before the move."""
    with ctx.db.read_sessions() as s:
        intent = s.get(Outbox, outbox_id)
        req = s.get(PromotionRequest, intent.request_id)
        return champion.moved(s, req, ctx.policy.rules(req.model, req.target))


def _void_stale(ctx: ServerContext, outbox_id: int, why: str) -> None:
    with ctx.db.session() as s:
        intent = s.get(Outbox, outbox_id)
        if intent is None or intent.state != "pending":
            return
        req = lock_request(s, intent.request_id)
        _end_stale(s, ctx, intent, req, why)


def _end_stale(
    s: Session, ctx: ServerContext, intent: Outbox, req: PromotionRequest, why: str
) -> None:
    intent.state, intent.done_at, intent.last_error = "void", ctx.now(), f"champion moved: {why}"
    _mark_stale(s, ctx, req, why, at_stage="alias_move")


def _mark_stale(
    s: Session, ctx: ServerContext, req: PromotionRequest, why: str, *, at_stage: str
) -> None:
    set_state(ctx, req, "stale")
    record_event(s, ctx, "system", "champion_changed", req, reason=why, at_stage=at_stage)


# --- rollbacks ---------------------------------------------------------------------------
def _apply_rollback(ctx: ServerContext, outbox_id: int, payload: dict) -> bool:
    """Point MLflow back at the earlier holder, then journal and audit it, once."""
    model, alias = payload["model"], payload["alias"]
    with ctx.db.read_sessions() as s:
        row = holder(s, model, alias)
    if row is None or row.id != payload["from_journal_id"]:
        _void_rollback(ctx, outbox_id)
        return False
    try:
        prep = _rollback_subjects(ctx, payload)
        ctx.gateway.set_alias(model, alias, payload["version"])
    except RegistryError as exc:
        _retry_later(ctx, outbox_id, exc)
        return False
    crash_here(ctx, "after_mlflow_set")
    done, signed = _finish_rollback(ctx, outbox_id, prep)
    crash_here(ctx, "after_final")
    _attach(ctx, signed)
    return done


def _rollback_subjects(ctx: ServerContext, payload: dict) -> attestations.Prepared | None:
    """The restored version's subjects; its evidence as it stands (a rollback is not held
    up by evidence edited since: the statement then names the digest approved back then)."""
    model, alias, version = payload["model"], payload["alias"], payload["version"]
    bundle, digest = None, None
    with ctx.db.read_sessions() as s:
        req = (
            s.get(PromotionRequest, payload["to_request_id"])
            if payload.get("to_request_id")
            else None
        )
        if req is not None:
            digest = req.evidence_digest
    try:
        bundle, current = checked_evidence(ctx, "system", model, version)
    except (EvidenceMismatch, EvidenceError):
        bundle = None
    else:
        if digest is None or current == digest:
            digest = current
        else:
            bundle = None
    return attestations.prepare(ctx, model, alias, version, bundle, digest)


def _finish_rollback(
    ctx: ServerContext, outbox_id: int, prep: attestations.Prepared | None
) -> tuple[bool, int | None]:
    """As :func:`_finish`, for a rollback."""
    with ctx.db.session() as s:
        intent = lock_pending_outbox(s, outbox_id)
        if intent is None:
            return False, None  # another worker finished it
        p = intent.payload
        lock_target(s, p["model"], p["alias"])
        row = holder(s, p["model"], p["alias"], lock=True)
        if row is None or row.id != p["from_journal_id"]:
            _end_rollback_void(s, ctx, intent)
            return False, None
        move_alias(
            s,
            ctx,
            model=p["model"],
            alias=p["alias"],
            version=p["version"],
            request_id=p.get("to_request_id"),
            action="rollback",
        )
        intent.state, intent.done_at, intent.last_error = "done", ctx.now(), None
        approved_in = (
            s.get(PromotionRequest, p["to_request_id"]) if p.get("to_request_id") else None
        )
        signed = attestations.record(
            s,
            ctx,
            prep,
            action="rollback",
            previous=p["from_version"],
            request=None,
            approved_in=approved_in,
            actor=p["actor"],
            comment=p.get("comment", ""),
        )
        event = {**_rollback_event(p), "policy_digest": ctx.policy.digest}
        audit.append(s, actor=p["actor"], action="rolled_back", payload=event, at=ctx.now())
        ladder.void_on_leave(s, ctx, p["model"], p["alias"], p["from_version"], "rollback")
        signed_id = signed.id if signed is not None else None
    return True, signed_id


def _rollback_event(p: dict) -> dict:
    return {
        "model": p["model"],
        "alias": p["alias"],
        "from_version": p["from_version"],
        "to_version": p["version"],
        "comment": p.get("comment", ""),
    }


def _void_rollback(ctx: ServerContext, outbox_id: int) -> None:
    with ctx.db.session() as s:
        intent = s.get(Outbox, outbox_id)
        if intent is not None and intent.state == "pending":
            _end_rollback_void(s, ctx, intent)


def _end_rollback_void(s: Session, ctx: ServerContext, intent: Outbox) -> None:
    """The holder being rolled back was replaced before the rollback applied: nothing moves."""
    intent.state, intent.done_at = "void", ctx.now()
    intent.last_error = "the alias moved before the rollback was applied"
    payload = {**_rollback_event(intent.payload), "reason": intent.last_error}
    audit.append(s, actor="system", action="rollback_void", payload=payload, at=ctx.now())
