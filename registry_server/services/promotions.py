"""Promotion requests and approvals: the gate rules, enforced by the server itself.

Create checks the version, the evidence digest (recomputed from MLflow) and the policy
verdict; approvals check freeze windows, roles, the requester rule, distinct people and
the current evidence digest, under a row lock. At quorum the alias move goes through the
outbox (:mod:`registry_server.services.outbox`): never lost, applied once.

Example:
    >>> req = create(ctx, caller, model="churn", version=3, target="production",
    ...              evidence_digest=digest)                          # doctest: +SKIP
    >>> approve(ctx, ann, req["id"], comment="lgtm")["state"]         # doctest: +SKIP
    'pending'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.errors import (
    ChampionChanged,
    ConflictError,
    EvidenceMismatch,
    EvidenceVerifying,
    FreezeWindowError,
    PermissionDenied,
    PolicyViolation,
    RegistryUnavailable,
)
from mlops.identity import same_person
from mlops.policy import TargetPolicy, active_freeze, check
from registry_server.db.models import Approval, PromotionRequest
from registry_server.services import champion, ladder
from registry_server.services._rows import (
    lock_request,
    lock_target,
    not_found,
    record_event,
    set_state,
)
from registry_server.services.context import Caller, ServerContext, utc
from registry_server.services.evidence import checked_evidence
from registry_server.services.faults import crash_here
from registry_server.services.outbox import apply_intents, record_alias_intent
from registry_server.services.policies import policy_in_force_violation
from registry_server.services.request_reads import read_page, request_views
from registry_server.services.verifier import start_verification
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
    "release_soaked",
]


def _target(ctx: ServerContext, target: str, model: str) -> TargetPolicy:
    tp = ctx.policy.rules(model, target)  # defaults + the model's overrides
    if tp is None:
        verdict = check({}, ctx.policy, target, model=model)
        raise PolicyViolation(
            f"Target {target!r} is not in the promotion policy for {model!r} "
            f"(known: {', '.join(ctx.policy.targets_for(model)) or 'none'}).",
            hint=f"Add targets.{target} to promotion-policy.yaml or use a known target.",
            rules=[r.to_dict() for r in verdict.failures],
        )
    return tp


def _require(caller: Caller, roles: tuple[str, ...], action: str) -> None:
    if not caller.has_any(roles):
        raise PermissionDenied(
            f"User {caller.user!r} with roles {list(caller.roles)} may not {action}; "
            f"it needs one of {list(roles)}.",
        )


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
    tp = _target(ctx, target, model)
    bundle, digest = checked_evidence(ctx, caller.user, model, version)
    if evidence_digest != digest:
        raise EvidenceMismatch(
            f"Request names evidence {evidence_digest}, but {model!r} v{version} has {digest}.",
            hint="Re-read the version's evidence digest (tag mlops.evidence.digest) and retry.",
        )
    verdict = check(bundle, ctx.policy, target, model=model)
    if not verdict.passed:
        failed = "; ".join(f"{r.rule}: {r.reason}" for r in verdict.failures)
        raise PolicyViolation(
            f"{model!r} v{version} may not go to {target!r}: {failed}.",
            rules=[r.to_dict() for r in verdict.failures],
        )
    bound = champion.bind(ctx, bundle, model, target, tp)
    now = ctx.now()
    policy = ctx.policy  # one policy for the whole decision, even if a reload lands now
    with ctx.db.session() as s:
        lock_target(s, model, target)
        champion.check_create(s, model, target, bound)
        step = ladder.require_held(s, ctx, model, version, target, tp)
        release = tp.approvals.count == 0 and (step is None or step.done)
        older = s.scalars(
            select(PromotionRequest).where(
                PromotionRequest.model == model,
                PromotionRequest.target == target,
                PromotionRequest.state.in_(("pending", "verifying")),
            )
        ).all()
        _may_supersede(caller, older, model, target)
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
            champion=bound.to_dict() if bound is not None else None,
            policy_digest=policy.digest,
        )
        for old in older:
            set_state(ctx, old, "superseded")
            record_event(s, ctx, caller.user, "superseded", old, by_version=version)
        s.add(req)
        s.flush()
        record_event(s, ctx, caller.user, "requested", req, policy_digest=policy.digest)
        if tp.verify:  # approvals (or the move) wait for the verifier's outcome
            start_verification(s, ctx, caller.user, req, tp.verify)
        elif release:
            record_alias_intent(s, ctx, caller.user, req)
        request_id = req.id
    if release and not tp.verify:
        crash_here(ctx, "after_intent")
        apply_intents(ctx, request_id=request_id)
    return get(ctx, request_id)


def _may_supersede(
    caller: Caller, older: Sequence[PromotionRequest], model: str, target: str
) -> None:
    """Only a pending request's own requester (same identity) or an admin may supersede it."""
    foreign = [r for r in older if not same_person(r.requester, caller.user)]
    if foreign and not caller.is_admin:
        other = foreign[0]
        raise ConflictError(
            f"Request {other.id} of {other.requester!r} to move {model!r} to {target!r} is "
            f"pending; user {caller.user!r} may not supersede it (only its requester or an "
            "admin can).",
            hint=f"Wait for a decision on request {other.id}, or ask {other.requester!r} or "
            f"an admin to cancel it (POST /v1/promotions/{other.id}/cancel).",
        )


# --- decisions -------------------------------------------------------------------------------
def _pending(
    ctx: ServerContext,
    s: Session,
    req: PromotionRequest,
    tp: TargetPolicy,
    *,
    verifying_ok: bool = False,
) -> None:
    """Refuse unless ``req`` is pending (or, for a no, still being verified)."""
    _expire_one(ctx, s, req, tp)
    if req.state == "verifying" and not verifying_ok:
        raise EvidenceVerifying(
            f"Promotion request {req.id} is verifying: the server is re-deriving its "
            "evidence, and approvals count only once that matches.",
            hint=f"Wait until GET /v1/promotions/{req.id} shows it pending, then approve.",
        )
    if req.state == "verifying":
        return
    if req.state != "pending":
        raise ConflictError(
            f"Promotion request {req.id} is {req.state}, not pending.",
            hint="Only pending requests take decisions; open a new request if needed.",
        )


def approve(ctx: ServerContext, caller: Caller, request_id: int, *, comment: str = "") -> dict:
    """Record an approval; at quorum, approve and move the alias."""
    req = _read(ctx, request_id)
    tp = _target(ctx, req.target, req.model)
    window = active_freeze(tp, ctx.now())
    if window is not None:
        raise FreezeWindowError(
            f"{req.target!r} is frozen until {window.end.isoformat()} ({window.reason}).",
        )
    _require(caller, tp.approvals.roles, f"approve promotions to {req.target!r}")
    if tp.approvals.exclude_requester and same_person(caller.user, req.requester):
        raise PermissionDenied(
            f"User {caller.user!r} requested promotion {request_id} and may not approve it.",
            hint="Ask another approver.",
        )
    bundle, digest, verified = _approval_evidence(ctx, caller, req)
    if digest != req.evidence_digest:
        _record_stale(ctx, caller, request_id, digest)
        raise EvidenceMismatch(
            f"The evidence of {req.model!r} v{req.version} changed since request "
            f"{request_id} ({req.evidence_digest[:12]} -> {digest[:12]}); "
            "approvals of the old evidence no longer count.",
            hint="Open a new promotion request for the current evidence.",
        )
    _end_if_champion_moved(ctx, caller, request_id, tp)
    policy = ctx.policy  # one policy for the whole decision, even if a reload lands now
    violation = policy_in_force_violation(req, bundle, policy) if bundle is not None else None
    if violation is not None:
        raise violation
    with ctx.db.session() as s:
        req = lock_request(s, request_id)
        _pending(ctx, s, req, tp)
        ladder.require_soaked(s, ctx, req, tp)
        before = promotion_view(req, tp, ctx.now())
        mine = [
            a for a in before["approvals"] if same_person(a["user"], caller.user) and a["counts"]
        ]
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
                policy_digest=policy.digest,
            )
        )
        req.updated_at = ctx.now()
        s.flush()
        after = promotion_view(req, tp, ctx.now())
        record_event(
            s,
            ctx,
            caller.user,
            "approval",
            req,
            comment=comment,
            quorum=after["quorum"],
            evidence_verified=verified,
        )
        quorum = after["quorum"]["have"] >= after["quorum"]["need"]
        if quorum:
            record_alias_intent(s, ctx, caller.user, req)
    if quorum:
        crash_here(ctx, "after_intent")
        apply_intents(ctx, request_id=request_id, checked=(bundle, digest) if verified else None)
    return get(ctx, request_id)


def _approval_evidence(
    ctx: ServerContext, caller: Caller, req: PromotionRequest
) -> tuple[dict | None, str, bool]:
    """The evidence now (``None`` if MLflow could not be asked), its digest, and whether
    MLflow could be asked.

    If MLflow is unreachable the approval binds to the request's digest and the alias move
    re-checks the evidence before it touches MLflow (see the outbox), so an outage delays
    the move but neither loses the approval nor lets changed evidence through.
    """
    try:
        bundle, digest = checked_evidence(ctx, caller.user, req.model, req.version)
        return bundle, digest, True
    except RegistryUnavailable:
        return None, req.evidence_digest, False


def _end_if_champion_moved(
    ctx: ServerContext, caller: Caller, request_id: int, tp: TargetPolicy
) -> None:
    """End a pending request ``stale`` if its champion left the alias; then refuse."""
    with ctx.db.session() as s:
        req = lock_request(s, request_id)
        lock_target(s, req.model, req.target)
        why = champion.moved(s, req, tp) if req.state == "pending" else None
        if why is not None:
            set_state(ctx, req, "stale")
            record_event(
                s, ctx, caller.user, "champion_changed", req, reason=why, at_stage="approval"
            )
            model, target = req.model, req.target
    if why is not None:
        raise ChampionChanged(
            f"Promotion request {request_id} was {why}; it is now stale and its approvals "
            "no longer count.",
            hint=f"Evaluate {model!r} again against the current {target!r} holder, record the "
            "evidence and open a new request (POST /v1/promotions).",
        )


def _record_stale(ctx: ServerContext, caller: Caller, request_id: int, digest: str) -> None:
    with ctx.db.session() as s:
        req = lock_request(s, request_id)
        record_event(s, ctx, caller.user, "evidence_changed", req, current_digest=digest)


def reject(ctx: ServerContext, caller: Caller, request_id: int, *, comment: str = "") -> dict:
    """Reject a pending request (approver roles of the target)."""
    req = _read(ctx, request_id)
    tp = _target(ctx, req.target, req.model)
    _require(caller, tp.approvals.roles, f"reject promotions to {req.target!r}")
    with ctx.db.session() as s:
        req = lock_request(s, request_id)
        _pending(ctx, s, req, tp, verifying_ok=True)
        req.approvals.append(
            Approval(
                user=caller.user,
                roles=list(caller.roles),
                decision="reject",
                comment=comment,
                digest=req.evidence_digest,
                at=ctx.now(),
                policy_digest=ctx.policy.digest,
            )
        )
        set_state(ctx, req, "rejected")
        record_event(s, ctx, caller.user, "rejected", req, comment=comment)
    return get(ctx, request_id)


def cancel(ctx: ServerContext, caller: Caller, request_id: int) -> dict:
    """Cancel a pending request: its requester or an admin."""
    with ctx.db.session() as s:
        req = lock_request(s, request_id)
        if caller.user != req.requester and not caller.is_admin:
            raise PermissionDenied(
                f"User {caller.user!r} may not cancel request {request_id} "
                f"of {req.requester!r}; only the requester or an admin can.",
            )
        tp = ctx.policy.rules(req.model, req.target)
        if tp is not None:
            _pending(ctx, s, req, tp, verifying_ok=True)
        elif req.state not in ("pending", "verifying"):
            raise ConflictError(f"Promotion request {request_id} is {req.state}, not pending.")
        set_state(ctx, req, "cancelled")
        record_event(s, ctx, caller.user, "cancelled", req)
    return get(ctx, request_id)


# --- expiry and the outbox ------------------------------------------------------------------
def _expire_one(ctx: ServerContext, s: Session, req: PromotionRequest, tp: TargetPolicy) -> bool:
    ttl = tp.approvals.request_ttl
    if req.state != "pending" or ttl is None or ctx.now() - utc(req.created_at) <= ttl:
        return False
    set_state(ctx, req, "expired")
    record_event(s, ctx, "system", "expired", req)
    return True


def expire_due(ctx: ServerContext) -> int:
    """Mark pending requests older than their target's ``request_ttl`` expired."""
    count = 0
    with ctx.db.session() as s:
        for req in s.scalars(select(PromotionRequest).where(PromotionRequest.state == "pending")):
            tp = ctx.policy.rules(req.model, req.target)
            count += bool(tp and _expire_one(ctx, s, req, tp))
    return count


def release_soaked(ctx: ServerContext) -> int:
    """Move the alias for pending ladder requests that need no approval once soaked.

    The background pass calls it; each request is re-checked under its lock, so of several
    workers one records the move.
    """
    due = []
    with ctx.db.read_sessions() as s:
        for req in s.scalars(select(PromotionRequest).where(PromotionRequest.state == "pending")):
            tp = ctx.policy.rules(req.model, req.target)
            if tp is not None and tp.requires is not None and not tp.approvals.count:
                due.append(req.id)
    released = []
    for request_id in due:
        with ctx.db.session() as s:
            req = lock_request(s, request_id)
            lock_target(s, req.model, req.target)
            tp = ctx.policy.rules(req.model, req.target)
            step = ladder.soak_of(s, ctx, req, tp) if req.state == "pending" else None
            if step is not None and step.done and tp is not None and not tp.approvals.count:
                record_alias_intent(s, ctx, "system", req)
                released.append(request_id)
    for request_id in released:
        apply_intents(ctx, request_id=request_id)
    return len(released)


# --- reads ------------------------------------------------------------------------------
def _read(ctx: ServerContext, request_id: int) -> PromotionRequest:
    with ctx.db.read_sessions() as s:
        req = s.get(PromotionRequest, request_id)
        if req is None:
            raise not_found(request_id)
        return req


def get(ctx: ServerContext, request_id: int) -> dict[str, Any]:
    """The wire form of one request."""
    with ctx.db.statement_reads() as s:
        rows, _, _ = read_page(s, request_id=request_id, limit=1)
        if not rows:
            raise not_found(request_id)
        return request_views(ctx, s, rows)[0]


def list_requests(
    ctx: ServerContext,
    *,
    model: str | None = None,
    target: str | None = None,
    state: str | None = None,
    limit: int = 50,
    offset: int = 0,
    before: int | None = None,
) -> dict[str, Any]:
    """A page of requests, newest first, with the total count.

    ``before`` (a request id) starts the page after that request: keyset paging, which
    reads only the page however deep it is. ``next_before`` is the value for the next
    page, ``None`` on the last one.

    Example:
        >>> page = list_requests(ctx, state="pending", limit=50)       # doctest: +SKIP
        >>> list_requests(ctx, state="pending", before=page["next_before"])  # doctest: +SKIP
    """
    filters = {"model": model or None, "target": target or None, "state": state or None}
    with ctx.db.statement_reads() as s:
        rows, more, total = read_page(
            s, limit=limit, offset=offset, before=before, total=True, **filters
        )
        items = request_views(ctx, s, rows)
    return {
        "items": items,
        "total": total or 0,
        "limit": limit,
        "offset": offset,
        "next_before": rows[-1].id if more else None,
    }
