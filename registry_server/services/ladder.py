"""Promotion ladders: a target that needs the version to have held another alias first.

``production: requires: {held: staging, for: 24h}`` means a request for ``production``
opens only for a version that holds ``staging`` now; it stays ``pending``, blocked by
``soak`` with the time left, and takes approvals once the version has held ``staging`` for
24 hours (the time counts from its journal row: when it took the alias). If the version
leaves ``staging`` while the request waits (rolled back, or replaced) the request ends
``voided`` with a ``ladder_voided`` audit event naming why (``held_alias_rolled_back`` or
``held_alias_replaced``). The verdict itself is :func:`mlops.policy.soak`, shared with the
library.

Example:
    >>> with ctx.db.read_sessions() as s:                       # doctest: +SKIP
    ...     soak_of(s, ctx, req, tp).left
    datetime.timedelta(seconds=3600)
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.errors import PolicyViolation, SoakPending
from mlops.policy import Soak, TargetPolicy, soak
from registry_server.db.models import PromotionRequest
from registry_server.services._rows import record_event, set_state
from registry_server.services.context import ServerContext, utc
from registry_server.services.journal import holder

__all__ = [
    "VOID_REASONS",
    "held_since",
    "require_held",
    "require_soaked",
    "soak_of",
    "void_on_leave",
]

#: why a waiting request was voided: the audit event's ``reason_code``
VOID_REASONS = {
    "rollback": "held_alias_rolled_back",
    "promote": "held_alias_replaced",
}


def held_since(s: Session, model: str, alias: str, version: int) -> datetime | None:
    """When ``version`` took ``model@alias``, if it holds it now (from the journal)."""
    row = holder(s, model, alias)
    return utc(row.from_at) if row is not None and row.version == version else None


def soak_of(
    s: Session, ctx: ServerContext, req: PromotionRequest, tp: TargetPolicy | None
) -> Soak | None:
    """The ladder step of ``req`` now (``None``: its target has no ``requires``)."""
    if tp is None or tp.requires is None:
        return None
    since = held_since(s, req.model, tp.requires.held, req.version)
    return soak(tp, since, ctx.now())


def require_held(
    s: Session, ctx: ServerContext, model: str, version: int, target: str, tp: TargetPolicy
) -> Soak | None:
    """At create: the version must hold the ladder's alias (the soak may still run)."""
    if tp.requires is None:
        return None
    step = soak(tp, held_since(s, model, tp.requires.held, version), ctx.now())
    if step is not None and not step.holds:
        rule = step.rule()
        raise PolicyViolation(
            f"{model!r} v{version} may not go to {target!r}: {rule.rule}: {rule.reason} "
            f"(the ladder needs {tp.requires.held!r} for {step.need} first).",
            hint=f"Promote v{version} to {tp.requires.held!r} first (POST /v1/promotions), "
            "let it soak, then request this target.",
            rules=[rule.to_dict()],
        )
    return step


def require_soaked(s: Session, ctx: ServerContext, req: PromotionRequest, tp: TargetPolicy) -> None:
    """At approval: refuse while the soak runs (:class:`SoakPending`, the time left)."""
    step = soak_of(s, ctx, req, tp)
    if step is None or step.done:
        return
    reason = step.rule().reason
    until = f" (until {step.until.isoformat()})" if step.until else ""
    raise SoakPending(
        f"Promotion request {req.id} is soaking: {req.model!r} v{req.version} {reason}{until}; "
        "it takes approvals once the soak is over.",
        hint=f"Wait, then approve: GET /v1/promotions/{req.id} shows the time left.",
        left_seconds=step.left.total_seconds() if step.left is not None else None,
    )


def void_on_leave(
    s: Session, ctx: ServerContext, model: str, alias: str, version: int, action: str
) -> int:
    """``version`` just left ``model@alias``: void the requests waiting on it there.

    Called in the transaction that writes the journal move (promotion or rollback).
    Returns how many requests were voided.
    """
    stmt = select(PromotionRequest).where(
        PromotionRequest.model == model,
        PromotionRequest.version == version,
        PromotionRequest.state.in_(("pending", "verifying")),
    )
    code = VOID_REASONS.get(action, "held_alias_replaced")
    count = 0
    for req in s.scalars(stmt):
        tp = ctx.policy.rules(req.model, req.target)
        if tp is None or tp.requires is None or tp.requires.held != alias:
            continue
        set_state(ctx, req, "voided")
        how = "rolled back from" if action == "rollback" else "replaced in"
        record_event(
            s,
            ctx,
            "system",
            "ladder_voided",
            req,
            reason_code=code,
            reason=f"v{version} was {how} {alias!r} before the promotion to {req.target!r}",
            held=alias,
        )
        count += 1
    return count
