"""Policy dry-run: what a new policy would change, before it is deployed, rule by rule.

For every pending request the gate rules (the evidence verdict, freeze windows, the
ladder's soak and the approvals quorum) are judged under the policy in force and under
the new one; for every current holder of an alias protected by either policy, its
recorded evidence is judged against the checks (freeze windows, ladders and approvals
concern moves, not holders). Each item lists every rule with its old and new
result, and ``change``: ``blocks`` (passed, would not), ``unblocks`` (did not, would) or
``same``. Nothing is written.

Example:
    >>> out = dry_run(ctx, open("new-policy.yaml").read())     # doctest: +SKIP
    >>> [(i["id"], i["change"]) for i in out["requests"]]      # doctest: +SKIP
    [(7, 'blocks')]
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.errors import MlopsError
from mlops.policy import Policy, RuleResult, check, parse_policy
from registry_server.db.models import AliasJournal, PromotionRequest
from registry_server.services.context import ServerContext
from registry_server.services.evidence import checked_evidence
from registry_server.services.ladder import held_since
from registry_server.services.views import promotion_view

__all__ = ["dry_run"]


def _approvals_rule(policy: Policy, req: PromotionRequest, now: datetime) -> RuleResult | None:
    tp = policy.rules(req.model, req.target)
    if tp is None:
        return None
    quorum = promotion_view(req, tp, now)["quorum"]
    reason = f"{quorum['have']} of {quorum['need']} counted"
    return RuleResult("approvals.count", quorum["have"] >= quorum["need"], reason)


def _request_rules(
    s: Session, policy: Policy, bundle: dict, req: PromotionRequest, now: datetime
) -> list[RuleResult]:
    tp = policy.rules(req.model, req.target)
    since: datetime | bool | None = False
    if tp is not None and tp.requires is not None:
        since = held_since(s, req.model, tp.requires.held, req.version)
    verdict = check(bundle, policy, req.target, now=now, model=req.model, held_since=since)
    rules = list(verdict.rules)
    approvals = _approvals_rule(policy, req, now)
    return rules + ([approvals] if approvals is not None else [])


def _holder_rules(policy: Policy, bundle: dict, row: AliasJournal) -> list[RuleResult]:
    return list(check(bundle, policy, row.alias, model=row.model).rules)


def _compare(old: list[RuleResult], new: list[RuleResult]) -> dict[str, Any]:
    """``{"rules": [{"rule", "old", "new", "changed"}], "old_passed", "new_passed", "change"}``."""
    olds, news = {r.rule: r for r in old}, {r.rule: r for r in new}
    names = list(olds) + [n for n in news if n not in olds]
    rules = []
    for name in names:
        o, n = olds.get(name), news.get(name)
        was = None if o is None else {"passed": o.passed, "reason": o.reason}
        now = None if n is None else {"passed": n.passed, "reason": n.reason}
        changed = (o.passed if o else None) != (n.passed if n else None)
        rules.append({"rule": name, "old": was, "new": now, "changed": changed})
    old_ok, new_ok = all(r.passed for r in old), all(r.passed for r in new)
    change = "same" if old_ok == new_ok else ("blocks" if old_ok else "unblocks")
    return {"old_passed": old_ok, "new_passed": new_ok, "change": change, "rules": rules}


def _evidence(ctx: ServerContext, model: str, version: int) -> tuple[dict | None, str | None]:
    try:
        return checked_evidence(ctx, "system", model, version)[0], None
    except MlopsError as exc:  # one unreadable version must not hide the others
        return None, f"{exc.code}: {exc.message}"


def _requests(ctx: ServerContext, s: Session, new: Policy, now: datetime) -> list[dict]:
    out = []
    stmt = select(PromotionRequest).where(PromotionRequest.state == "pending")
    for req in s.scalars(stmt.order_by(PromotionRequest.id)):
        item = {"id": req.id, "model": req.model, "version": req.version, "target": req.target}
        bundle, error = _evidence(ctx, req.model, req.version)
        if bundle is None:
            out.append({**item, "error": error})
            continue
        old_rules = _request_rules(s, ctx.policy, bundle, req, now)
        new_rules = _request_rules(s, new, bundle, req, now)
        out.append({**item, **_compare(old_rules, new_rules)})
    return out


def _protected(policy: Policy, model: str, alias: str) -> bool:
    tp = policy.rules(model, alias)
    return tp is not None and tp.protected


def _holders(ctx: ServerContext, s: Session, new: Policy) -> list[dict]:
    out = []
    stmt = select(AliasJournal).where(AliasJournal.to_at.is_(None))
    for row in s.scalars(stmt.order_by(AliasJournal.model, AliasJournal.alias)):
        if not any(_protected(p, row.model, row.alias) for p in (ctx.policy, new)):
            continue
        item = {"model": row.model, "alias": row.alias, "version": row.version}
        bundle, error = _evidence(ctx, row.model, row.version)
        if bundle is None:
            out.append({**item, "error": error})
            continue
        compared = _compare(_holder_rules(ctx.policy, bundle, row), _holder_rules(new, bundle, row))
        out.append({**item, **compared})
    return out


def dry_run(ctx: ServerContext, source: str) -> dict[str, Any]:
    """Judge pending requests and protected holders under the policy now and ``source``.

    ``source`` is the new policy's YAML; an invalid one raises
    :class:`~mlops.errors.PolicyError` naming the key. Nothing is written.
    """
    new = parse_policy(source)
    now = ctx.now()
    with ctx.db.read_sessions() as s:
        requests = _requests(ctx, s, new, now)
        holders = _holders(ctx, s, new)
    count = {
        key: sum(1 for i in items if i.get("change") == key)
        for key, items in (("blocks", requests), ("unblocks", requests))
    }
    count["holders_failing"] = sum(1 for h in holders if h.get("change") == "blocks")
    return {
        "old_digest": ctx.policy.digest,
        "new_digest": new.digest,
        "requests": requests,
        "holders": holders,
        "summary": count,
    }
