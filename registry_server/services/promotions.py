"""Promotion requests and approvals: the gate rules, enforced by the server itself.

Quorum reached -> one transaction sets the request ``approved`` and records an alias
intent in the outbox; then MLflow moves the alias; then a second transaction marks the
request ``promoted``, writes the alias journal and the ``promoted`` audit event. If MLflow
fails, the intent stays pending and :func:`apply_intents` (next request or the background
reconciler) finishes it: never lost, one ``promoted`` event.

Example:
    >>> req = create(ctx, caller, model="churn", version=3, target="production",
    ...              evidence_digest=digest)                          # doctest: +SKIP
    >>> approve(ctx, ann, req["id"], comment="lgtm")["state"]         # doctest: +SKIP
    'pending'
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mlops.errors import (
    ConflictError,
    EvidenceMismatch,
    FreezeWindowError,
    NotFoundError,
    PermissionDenied,
    PolicyViolation,
    RegistryError,
)
from mlops.policy import TargetPolicy, active_freeze, check
from registry_server.db.models import Approval, Outbox, PromotionRequest
from registry_server.services import audit
from registry_server.services.aliases import move_alias
from registry_server.services.context import Caller, ServerContext, utc
from registry_server.services.evidence import current_evidence
from registry_server.services.views import promotion_view

__all__ = [
    "apply_intents",
    "approve",
    "cancel",
    "create",
    "expire_due",
    "get",
    "list_requests",
    "reject",
]

_INTENT = "alias_intent"
_MAX_BACKOFF = 300.0


def _target(ctx: ServerContext, target: str) -> TargetPolicy:
    if target not in ctx.policy.targets:
        verdict = check({}, ctx.policy, target)
        raise PolicyViolation(
            f"Target {target!r} is not in the promotion policy "
            f"(known: {', '.join(sorted(ctx.policy.targets)) or 'none'}).",
            hint=f"Add targets.{target} to promotion-policy.yaml or use a known target.",
            rules=[r.to_dict() for r in verdict.failures],
        )
    return ctx.policy.targets[target]


def _lock(session: Session, request_id: int) -> PromotionRequest:
    stmt = select(PromotionRequest).where(PromotionRequest.id == request_id)
    if session.get_bind().dialect.name != "sqlite":  # SQLite: BEGIN IMMEDIATE already
        stmt = stmt.with_for_update()
    req = session.scalar(stmt)
    if req is None:
        raise NotFoundError(
            f"No promotion request with id {request_id}.",
            hint="List requests with GET /v1/promotions.",
        )
    return req


def _lock_target(session: Session, model: str, target: str) -> None:
    """Serialise requests for one model+target (SQLite: BEGIN IMMEDIATE already does)."""
    if session.get_bind().dialect.name == "postgresql":
        key = f"mlops.promotion:{model}:{target}"
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})


def _event(session: Session, ctx: ServerContext, actor: str, action: str, req, **extra) -> None:
    payload = {
        "request_id": req.id,
        "model": req.model,
        "version": req.version,
        "target": req.target,
        "evidence_digest": req.evidence_digest,
        **extra,
    }
    audit.append(session, actor=actor, action=action, payload=payload, at=ctx.now())


def _require(caller: Caller, roles: tuple[str, ...], action: str) -> None:
    if not caller.has_any(roles):
        raise PermissionDenied(
            f"User {caller.user!r} with roles {list(caller.roles)} may not {action}; "
            f"it needs one of {list(roles)}.",
        )


def _set_state(ctx: ServerContext, req: PromotionRequest, state: str) -> None:
    req.state = state
    req.updated_at = ctx.now()


# --- create ---------------------------------------------------------------------------------
def create(
    ctx: ServerContext,
    caller: Caller,
    *,
    model: str,
    version: int,
    target: str,
    evidence_digest: str,
) -> dict[str, Any]:
    """Open a request after checking version, evidence digest and policy verdict."""
    _require(caller, ("requester", "admin"), "request a promotion")
    tp = _target(ctx, target)
    bundle, digest = current_evidence(ctx.gateway, model, version)
    if evidence_digest != digest:
        raise EvidenceMismatch(
            f"Request names evidence {evidence_digest}, but {model!r} v{version} has {digest}.",
            hint="Re-read the version's evidence digest (tag mlops.evidence.digest) and retry.",
        )
    verdict = check(bundle, ctx.policy, target)
    if not verdict.passed:
        failed = "; ".join(f"{r.rule}: {r.reason}" for r in verdict.failures)
        raise PolicyViolation(
            f"{model!r} v{version} may not go to {target!r}: {failed}.",
            rules=[r.to_dict() for r in verdict.failures],
        )
    now = ctx.now()
    with ctx.db.session() as s:
        _lock_target(s, model, target)
        older = s.scalars(
            select(PromotionRequest).where(
                PromotionRequest.model == model,
                PromotionRequest.target == target,
                PromotionRequest.state == "pending",
            )
        )
        req = PromotionRequest(
            model=model,
            version=version,
            target=target,
            evidence_digest=digest,
            requester=caller.user,
            state="pending",
            verdict={"passed": verdict.passed, "rules": [r.to_dict() for r in verdict.rules]},
            created_at=now,
            updated_at=now,
        )
        for old in list(older):
            _set_state(ctx, old, "superseded")
            _event(s, ctx, caller.user, "superseded", old, by_version=version)
        s.add(req)
        s.flush()
        _event(s, ctx, caller.user, "requested", req)
        if tp.approvals.count == 0:
            _to_approved(s, ctx, caller.user, req)
        request_id = req.id
    if tp.approvals.count == 0:
        apply_intents(ctx, request_id=request_id)
    return get(ctx, request_id)


def _to_approved(s: Session, ctx: ServerContext, actor: str, req: PromotionRequest) -> None:
    _set_state(ctx, req, "approved")
    payload = {"model": req.model, "alias": req.target, "version": req.version}
    s.add(
        Outbox(
            kind=_INTENT,
            request_id=req.id,
            payload=payload,
            state="pending",
            attempts=0,
            next_attempt_at=ctx.now(),
            created_at=ctx.now(),
        )
    )
    _event(s, ctx, actor, "approved", req)


# --- decisions -------------------------------------------------------------------------------
def _pending(ctx: ServerContext, s: Session, req: PromotionRequest, tp: TargetPolicy) -> None:
    _expire_one(ctx, s, req, tp)
    if req.state != "pending":
        raise ConflictError(
            f"Promotion request {req.id} is {req.state}, not pending.",
            hint="Only pending requests take decisions; open a new request if needed.",
        )


def approve(ctx: ServerContext, caller: Caller, request_id: int, *, comment: str = "") -> dict:
    """Record an approval; at quorum, approve and move the alias."""
    req = _read(ctx, request_id)
    tp = _target(ctx, req.target)
    window = active_freeze(tp, ctx.now())
    if window is not None:
        raise FreezeWindowError(
            f"{req.target!r} is frozen until {window.end.isoformat()} ({window.reason}).",
        )
    _require(caller, tp.approvals.roles, f"approve promotions to {req.target!r}")
    if tp.approvals.exclude_requester and caller.user == req.requester:
        raise PermissionDenied(
            f"User {caller.user!r} requested promotion {request_id} and may not approve it.",
            hint="Ask another approver.",
        )
    _, digest = current_evidence(ctx.gateway, req.model, req.version)
    if digest != req.evidence_digest:
        _record_stale(ctx, caller, request_id, digest)
        raise EvidenceMismatch(
            f"The evidence of {req.model!r} v{req.version} changed since request "
            f"{request_id} ({req.evidence_digest[:12]} -> {digest[:12]}); "
            "approvals of the old evidence no longer count.",
            hint="Open a new promotion request for the current evidence.",
        )
    with ctx.db.session() as s:
        req = _lock(s, request_id)
        _pending(ctx, s, req, tp)
        before = promotion_view(req, tp, ctx.now())
        mine = [a for a in before["approvals"] if a["user"] == caller.user and a["counts"]]
        if mine and tp.approvals.distinct:
            raise ConflictError(
                f"User {caller.user!r} already approved promotion {request_id}.",
                hint="Each person counts once; ask another approver.",
            )
        req.approvals.append(
            Approval(
                user=caller.user,
                roles=list(caller.roles),
                decision="approve",
                comment=comment,
                digest=digest,
                at=ctx.now(),
            )
        )
        req.updated_at = ctx.now()
        s.flush()
        after = promotion_view(req, tp, ctx.now())
        _event(s, ctx, caller.user, "approval", req, comment=comment, quorum=after["quorum"])
        quorum = after["quorum"]["have"] >= after["quorum"]["need"]
        if quorum:
            _to_approved(s, ctx, caller.user, req)
    if quorum:
        apply_intents(ctx, request_id=request_id)
    return get(ctx, request_id)


def _record_stale(ctx: ServerContext, caller: Caller, request_id: int, digest: str) -> None:
    with ctx.db.session() as s:
        req = _lock(s, request_id)
        _event(s, ctx, caller.user, "evidence_changed", req, current_digest=digest)


def reject(ctx: ServerContext, caller: Caller, request_id: int, *, comment: str = "") -> dict:
    """Reject a pending request (approver roles of the target)."""
    req = _read(ctx, request_id)
    tp = _target(ctx, req.target)
    _require(caller, tp.approvals.roles, f"reject promotions to {req.target!r}")
    with ctx.db.session() as s:
        req = _lock(s, request_id)
        _pending(ctx, s, req, tp)
        req.approvals.append(
            Approval(
                user=caller.user,
                roles=list(caller.roles),
                decision="reject",
                comment=comment,
                digest=req.evidence_digest,
                at=ctx.now(),
            )
        )
        _set_state(ctx, req, "rejected")
        _event(s, ctx, caller.user, "rejected", req, comment=comment)
    return get(ctx, request_id)


def cancel(ctx: ServerContext, caller: Caller, request_id: int) -> dict:
    """Cancel a pending request: its requester or an admin."""
    with ctx.db.session() as s:
        req = _lock(s, request_id)
        if caller.user != req.requester and not caller.is_admin:
            raise PermissionDenied(
                f"User {caller.user!r} may not cancel request {request_id} "
                f"of {req.requester!r}; only the requester or an admin can.",
            )
        tp = ctx.policy.targets.get(req.target)
        if tp is not None:
            _pending(ctx, s, req, tp)
        elif req.state != "pending":
            raise ConflictError(f"Promotion request {request_id} is {req.state}, not pending.")
        _set_state(ctx, req, "cancelled")
        _event(s, ctx, caller.user, "cancelled", req)
    return get(ctx, request_id)


# --- expiry and the outbox ------------------------------------------------------------------
def _expire_one(ctx: ServerContext, s: Session, req: PromotionRequest, tp: TargetPolicy) -> bool:
    ttl = tp.approvals.request_ttl
    if req.state != "pending" or ttl is None or ctx.now() - utc(req.created_at) <= ttl:
        return False
    _set_state(ctx, req, "expired")
    _event(s, ctx, "system", "expired", req)
    return True


def expire_due(ctx: ServerContext) -> int:
    """Mark pending requests older than their target's ``request_ttl`` expired."""
    count = 0
    with ctx.db.session() as s:
        for req in s.scalars(select(PromotionRequest).where(PromotionRequest.state == "pending")):
            tp = ctx.policy.targets.get(req.target)
            count += bool(tp and _expire_one(ctx, s, req, tp))
    return count


def apply_intents(ctx: ServerContext, *, request_id: int | None = None) -> int:
    """Move the aliases of pending intents that are due (or of ``request_id``)."""
    with ctx.db.read_sessions() as s:
        stmt = select(Outbox.id).where(Outbox.kind == _INTENT, Outbox.state == "pending")
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
        req = _lock(s, intent.request_id)
        previous = move_alias(
            s, ctx, model=req.model, alias=req.target, version=req.version, request_id=req.id
        )
        req.previous_version = previous
        _set_state(ctx, req, "promoted")
        intent.state, intent.done_at = "done", ctx.now()
        intent.attempts += 1
        _event(s, ctx, "system", "promoted", req, previous_version=previous)
    return True


def _retry_later(ctx: ServerContext, outbox_id: int, exc: Exception) -> None:
    with ctx.db.session() as s:
        intent = s.get(Outbox, outbox_id)
        intent.attempts += 1
        intent.last_error = str(exc)[:2000]
        delay = min(2.0**intent.attempts, _MAX_BACKOFF)
        intent.next_attempt_at = ctx.now() + timedelta(seconds=delay)


# --- reads ------------------------------------------------------------------------------
def _read(ctx: ServerContext, request_id: int) -> PromotionRequest:
    with ctx.db.read_sessions() as s:
        req = s.get(PromotionRequest, request_id)
        if req is None:
            raise NotFoundError(
                f"No promotion request with id {request_id}.",
                hint="List requests with GET /v1/promotions.",
            )
        return req


def get(ctx: ServerContext, request_id: int) -> dict[str, Any]:
    """The wire form of one request."""
    with ctx.db.read_sessions() as s:
        req = s.get(PromotionRequest, request_id)
        if req is None:
            raise NotFoundError(
                f"No promotion request with id {request_id}.",
                hint="List requests with GET /v1/promotions.",
            )
        return _view(ctx, s, req)


def _view(ctx: ServerContext, s: Session, req: PromotionRequest) -> dict[str, Any]:
    view = promotion_view(req, ctx.policy.targets.get(req.target), ctx.now())
    if req.state == "approved":
        intent = s.scalar(select(Outbox).where(Outbox.request_id == req.id))
        if intent is not None and intent.state == "pending":
            why = intent.last_error or "queued"
            view["blocked_by"].append(f"alias move pending (attempts {intent.attempts}): {why}")
    return view


def list_requests(
    ctx: ServerContext,
    *,
    model: str | None = None,
    target: str | None = None,
    state: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """A page of requests, newest first, with the total count."""
    conds = []
    if model:
        conds.append(PromotionRequest.model == model)
    if target:
        conds.append(PromotionRequest.target == target)
    if state:
        conds.append(PromotionRequest.state == state)
    with ctx.db.read_sessions() as s:
        total = s.scalar(select(func.count()).select_from(PromotionRequest).where(*conds))
        stmt = (
            select(PromotionRequest)
            .where(*conds)
            .order_by(PromotionRequest.id.desc())
            .limit(limit)
            .offset(offset)
        )
        items = [_view(ctx, s, r) for r in s.scalars(stmt)]
    return {"items": items, "total": total or 0, "limit": limit, "offset": offset}
