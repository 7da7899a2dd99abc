"""What the pages read, built only from the server's service layer (no rules of its own).

Decisions (approve, reject, cancel, rollback) are not here: the routes call the very
service functions the REST routes call. These helpers gather and shape what a reviewer
needs to see, and say which buttons the caller may be offered.

Example:
    >>> age(timedelta(hours=5))
    '5h'
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from mlops.errors import AliasNotFound, EvidenceError, MlopsError, NotFoundError
from mlops.policy import active_freeze, check
from registry_server.db.models import AuditEvent
from registry_server.services import aliases, audit, promotions
from registry_server.services.context import Caller, ServerContext
from registry_server.services.evidence import current_evidence
from registry_server.web._charts import metric_bars

__all__ = [
    "age",
    "alias_page",
    "audit_page",
    "data_docs",
    "may_approve",
    "pending_page",
    "request_page",
]

_SUITE = re.compile(r"^[A-Za-z0-9_.\-]+$")
DATA_DOCS_DIR = "mlops/validation"


def age(delta: timedelta) -> str:
    """A short age: ``45s``, ``12m``, ``5h``, ``3d``."""
    seconds = max(int(delta.total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _age_of(ctx: ServerContext, iso: str) -> str:
    return age(ctx.now() - datetime.fromisoformat(iso))


def pending_page(ctx: ServerContext, *, state: str | None = "pending") -> dict[str, Any]:
    """Requests in ``state`` (all states if ``None``), newest first, with their age."""
    page = promotions.list_requests(ctx, state=state, limit=200)
    for item in page["items"]:
        item["age"] = _age_of(ctx, item["created_at"])
    return page


def may_approve(ctx: ServerContext, caller: Caller, req: dict[str, Any]) -> tuple[bool, str]:
    """Whether to offer approve/reject to ``caller``, and why not (the server checks again)."""
    tp = ctx.policy.rules(req["model"], req["target"])
    if req["state"] != "pending":
        return False, f"This request is {req['state']}; only pending requests take decisions."
    if tp is None:
        return False, f"Target {req['target']!r} is no longer in the promotion policy."
    if not caller.has_any(tp.approvals.roles):
        return False, (
            f"Your roles ({', '.join(caller.roles)}) cannot approve promotions to "
            f"{req['target']}; it needs one of: {', '.join(tp.approvals.roles)}."
        )
    window = active_freeze(tp, ctx.now())
    if window is not None:
        return False, (
            f"Promotions to {req['target']} are frozen until {window.end.isoformat()} "
            f"({window.reason})."
        )
    if tp.approvals.exclude_requester and caller.user == req["requester"]:
        return False, "You requested this promotion; another approver has to decide on it."
    if tp.approvals.distinct and any(
        a["user"] == caller.user and a["counts"] for a in req["approvals"]
    ):
        return False, "You already approved this request; each person counts once."
    return True, ""


def _evaluation(bundle: dict[str, Any]) -> dict[str, Any] | None:
    evaluation = bundle.get("evaluation")
    if not evaluation:
        return None
    metrics = evaluation.get("metrics") or {}
    cand, champ = metrics.get("candidate") or {}, metrics.get("champion") or {}
    verdicts = {v.get("metric"): v for v in evaluation.get("verdicts") or []}
    rows = []
    for name in sorted(set(cand) | set(champ)):
        c, h = cand.get(name), champ.get(name)
        delta = c - h if isinstance(c, int | float) and isinstance(h, int | float) else None
        rel = delta / abs(h) if delta is not None and h else None
        rows.append(
            {
                "metric": name,
                "candidate": c,
                "champion": h,
                "delta": delta,
                "relative": rel,
                "verdict": verdicts.get(name),
            }
        )
    chart = metric_bars([(r["metric"], r["candidate"], r["champion"]) for r in rows])
    return {"report": evaluation, "rows": rows, "chart": chart}


def _evidence(ctx: ServerContext, req: dict[str, Any]) -> dict[str, Any]:
    try:
        bundle, digest = current_evidence(ctx.gateway, req["model"], req["version"])
    except MlopsError as exc:
        return {"error": exc, "bundle": None}
    verdict = check(bundle, ctx.policy, req["target"], now=ctx.now(), model=req["model"])
    return {
        "error": None,
        "bundle": bundle,
        "digest": digest,
        "changed": digest != req["evidence_digest"],
        "verdict": verdict.to_dict(),
        "evaluation": _evaluation(bundle),
        "has_run": bool((bundle.get("model") or {}).get("run_id")),
    }


def request_page(ctx: ServerContext, caller: Caller, request_id: int) -> dict[str, Any]:
    """One request with its evidence, the live policy verdict and what the caller may do."""
    req = promotions.get(ctx, request_id)
    req["age"] = _age_of(ctx, req["created_at"])
    can, why = may_approve(ctx, caller, req)
    can_cancel = req["state"] == "pending" and (caller.user == req["requester"] or caller.is_admin)
    return {
        "req": req,
        "evidence": _evidence(ctx, req),
        "can_decide": can,
        "why_not": why,
        "can_cancel": can_cancel,
    }


def alias_page(ctx: ServerContext, caller: Caller, model: str, alias: str) -> dict[str, Any]:
    """The alias's holder now (journal and MLflow), its history, and the rollback offer."""
    try:
        holder = aliases.current(ctx.db, model, alias)
    except AliasNotFound:
        holder = None
    items = aliases.history(ctx.db, model, alias)["items"]
    try:
        in_mlflow: int | str | None = ctx.gateway.get_alias(model, alias)
    except MlopsError as exc:
        in_mlflow = f"unreachable ({exc.code})"
    tp = ctx.policy.rules(model, alias)
    previous = next((i for i in items if holder and i["version"] != holder["version"]), None)
    if tp is None:
        why = f"{alias!r} is not a target of the promotion policy."
    elif not caller.has_any(tp.rollback.roles):
        why = f"Rolling back {alias} needs one of: {', '.join(tp.rollback.roles)}."
    elif previous is None:
        why = "No earlier version held this alias; nothing to roll back to."
    else:
        why = ""
    return {
        "model": model,
        "alias": alias,
        "holder": holder,
        "items": items,
        "in_mlflow": in_mlflow,
        "previous": previous,
        "can_rollback": not why,
        "why_not": why,
    }


def audit_page(ctx: ServerContext, *, last: int = 50) -> dict[str, Any]:
    """The chain's verification and the ``last`` events, newest first."""
    with ctx.db.read_sessions() as s:
        result = audit.verify(s)
        top = s.scalar(select(func.max(AuditEvent.id))) or 0
        events = audit.list_events(s, after=max(top - last, 0), limit=last)
    return {"verify": result, "events": list(reversed(events))}


def data_docs(ctx: ServerContext, model: str, version: int, suite: str) -> bytes:
    """The Data Docs HTML logged for ``suite`` in the version's run (through the gateway)."""
    bundle, _ = current_evidence(ctx.gateway, model, version)
    suites = [v.get("suite") for v in bundle.get("validation") or []]
    run_id = (bundle.get("model") or {}).get("run_id")
    if suite not in suites or not _SUITE.match(suite) or not run_id:
        raise NotFoundError(
            f"{model!r} v{version} has no validation report for suite {suite!r} "
            f"(its evidence has: {', '.join(map(str, suites)) or 'none'}).",
            hint="Open the Data Docs link of a suite listed on the request page.",
        )
    path = f"{DATA_DOCS_DIR}/{suite}.html"
    try:
        return ctx.gateway._download(run_id, path)
    except EvidenceError as exc:
        raise NotFoundError(
            f"No Data Docs page {path!r} in run {run_id} of {model!r} v{version}.",
            hint="Validate with `mlops.validate(..., log=True)` inside the model's run.",
        ) from exc
