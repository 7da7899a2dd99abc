"""Wire forms of requests: approvals with "counts"/"why_not", quorum and "blocked_by".

Example:
    >>> promotion_view(req, policy.targets["production"], now)["quorum"]  # doctest: +SKIP
    {'have': 1, 'need': 2}
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mlops.policy import (
    ApprovalRecord,
    Soak,
    Tally,
    TargetPolicy,
    active_freeze,
    approval_reasons,
    expiring_approvals,
)
from registry_server.db.models import PromotionRequest
from registry_server.services.context import utc

__all__ = ["promotion_view"]


def _records(rows: Any) -> list[tuple[Any, ApprovalRecord]]:
    pairs = [
        (a, ApprovalRecord(a.user, tuple(a.roles), a.decision, a.digest, utc(a.at))) for a in rows
    ]
    return sorted(pairs, key=lambda p: (p[1].at, p[0].id or 0))


def promotion_view(
    req: PromotionRequest | Any,
    tp: TargetPolicy | None,
    now: datetime,
    *,
    soak: Soak | None = None,
    approvals: Any = None,
) -> dict:
    """The Promotion JSON of the REST contract for ``req`` at time ``now``.

    ``soak`` is the ladder step of a pending request (``registry_server.services.ladder``):
    while it runs, ``blocked_by`` names the time left. ``approvals`` are the request's
    approval rows when ``req`` is a plain row without them (default: ``req.approvals``).
    """
    pairs = _records(req.approvals if approvals is None else approvals)
    shown: list[dict[str, Any]] = []
    have, need, blocked, warnings = 0, 0, [], []
    if tp is not None:
        records = [r for _, r in pairs]
        previous: Tally | None = None
        if records:  # each approval as it was judged when it came: counted, or why not
            reasons, previous = approval_reasons(
                tp, records, requester=req.requester, digest=req.evidence_digest, now=now
            )
            rows = [row for row, _ in pairs]
            shown = [_approval(r, why is None, why) for r, why in zip(rows, reasons, strict=True)]
        have, need = (previous.have, previous.need) if previous else (0, tp.approvals.count)
        if req.state == "pending":
            if soak is not None and not soak.done:
                blocked.append(f"soak: {soak.rule().reason}")
            if previous is not None:
                warnings = expiring_approvals(tp, previous, records, now=now)
            if have < need:
                blocked.append(f"approvals: {have} of {need} required")
            window = active_freeze(tp, now)
            if window is not None:
                blocked.append(f"freeze: until {window.end.isoformat()} ({window.reason})")
    else:
        shown = [_approval(row, False, "target no longer in the policy") for row, _ in pairs]
        blocked.append(f"target {req.target!r} is not in the policy")
    return {
        "id": req.id,
        "model": req.model,
        "version": req.version,
        "target": req.target,
        "evidence_digest": req.evidence_digest,
        "requester": req.requester,
        "state": req.state,
        "created_at": utc(req.created_at).isoformat(),
        "updated_at": utc(req.updated_at).isoformat(),
        "approvals": shown,
        "verdict": {"passed": req.verdict.get("passed"), "rules": req.verdict.get("rules", [])},
        "quorum": {"have": have, "need": need},
        "blocked_by": blocked,
        "champion": req.champion,
        "soak": soak.to_dict() if soak is not None else None,
        "expiring": warnings,
        "policy_digest": req.policy_digest,
    }


def _approval(row: Any, counts: bool, why: str | None) -> dict[str, Any]:
    return {
        "user": row.user,
        "decision": row.decision,
        "comment": row.comment,
        "digest": row.digest,
        "at": utc(row.at).isoformat(),
        "counts": counts,
        "why_not": why,
        "policy_digest": getattr(row, "policy_digest", None),
    }
