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

from mlops.errors import AliasNotFound, EvidenceError, MlopsError, NotFoundError
from mlops.policy import active_freeze, check
from registry_server.services import aliases, promotions
from registry_server.services.context import Caller, ServerContext
from registry_server.services.evidence import current_evidence
from registry_server.web._charts import metric_bars
from registry_server.web._compare import compare

__all__ = [
    "age",
    "alias_page",
    "data_docs",
    "headline_metric",
    "may_approve",
    "pending_page",
    "request_page",
    "span",
    "summary",
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


def span(delta: timedelta) -> str:
    """A countdown: ``1h 5m 3s``, ``2s`` (what the page's script keeps ticking down).

    Example:
        >>> span(timedelta(hours=1, seconds=3))
        '1h 0m 3s'
    """
    seconds = max(int(delta.total_seconds() + 0.999), 0)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{n}{unit}" for n, unit in parts)


def _age_of(ctx: ServerContext, iso: str) -> str:
    return age(ctx.now() - datetime.fromisoformat(iso))


PAGE_SIZE = 25


def pending_page(
    ctx: ServerContext, *, state: str | None = "pending", offset: int = 0, limit: int = PAGE_SIZE
) -> dict[str, Any]:
    """Requests in ``state`` (all states if ``None``), newest first, one page of them, each
    with its age, live checks, headline metric against the champion and what blocks it."""
    page = promotions.list_requests(ctx, state=state, limit=limit, offset=offset)
    for item in page["items"]:
        item["age"] = _age_of(ctx, item["created_at"])
        item["summary"] = summary(ctx, item)
    page["next"] = offset + limit if offset + limit < page["total"] else None
    page["previous"] = max(offset - limit, 0) if offset > 0 else None
    return page


def headline_metric(
    ctx: ServerContext, model: str, target: str, candidate: dict[str, Any]
) -> str | None:
    """The policy's first metric rule for ``model``@``target``, else the candidate's first."""
    tp = ctx.policy.rules(model, target)
    if tp is not None and tp.checks.metrics:
        return next(iter(tp.checks.metrics))
    return min(candidate, default=None)


def summary(ctx: ServerContext, req: dict[str, Any]) -> dict[str, Any]:
    """Checks (live, from the evidence), headline metric and delta, champion, blockers."""
    out: dict[str, Any] = {"error": None, "checks": None, "failed": [], "metric": None}
    out["blocked_by"] = list(req.get("blocked_by") or [])
    try:
        bundle, digest = current_evidence(ctx.gateway, req["model"], req["version"])
    except MlopsError as exc:
        out["error"] = f"evidence unreadable ({exc.code})"
        out["blocked_by"].append(out["error"])
        return out
    verdict = check(bundle, ctx.policy, req["target"], now=ctx.now(), model=req["model"])
    checks = [r for r in verdict.rules if r.rule.startswith("checks.")]
    out["failed"] = [r.rule.removeprefix("checks.") for r in checks if not r.passed]
    out["checks"] = {"passed": not out["failed"], "count": len(checks)}
    if digest != req["evidence_digest"]:
        out["blocked_by"].append("evidence changed since the request")
    if req["state"] == "pending":
        out["blocked_by"] += [f"check failed: {name}" for name in out["failed"]]
    evaluation = bundle.get("evaluation") or {}
    metrics = evaluation.get("metrics") or {}
    cand, champ = metrics.get("candidate") or {}, metrics.get("champion") or {}
    name = headline_metric(ctx, req["model"], req["target"], cand)
    if name is not None:
        c, h = cand.get(name), champ.get(name)
        number = isinstance(c, int | float) and isinstance(h, int | float)
        delta = c - h if number else None
        tp = ctx.policy.rules(req["model"], req["target"])
        rule = tp.checks.metrics.get(name) if tp is not None else None
        higher = rule.greater_is_better if rule is not None else True
        better = None if not delta else (delta > 0) == higher
        out["metric"] = {"name": name, "candidate": c, "delta": delta, "better": better}
    out["champion"] = evaluation.get("champion_version")
    return out


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


def _evidence(
    ctx: ServerContext, req: dict[str, Any], *, mlflow_ui: str | None = None
) -> dict[str, Any]:
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
        "compare": compare(ctx, req["model"], req["version"], bundle, mlflow_ui=mlflow_ui),
    }


def request_page(
    ctx: ServerContext, caller: Caller, request_id: int, *, mlflow_ui: str | None = None
) -> dict[str, Any]:
    """One request with its evidence, the live policy verdict, what changed against the
    champion (links into the MLflow UI at ``mlflow_ui``) and what the caller may do."""
    req = promotions.get(ctx, request_id)
    req["age"] = _age_of(ctx, req["created_at"])
    if req.get("soak") and req["soak"]["left_seconds"] is not None:
        req["soak_left"] = span(timedelta(seconds=req["soak"]["left_seconds"]))
    for warning in req.get("expiring") or ():
        warning["left"] = span(timedelta(seconds=warning["left_seconds"]))
    can, why = may_approve(ctx, caller, req)
    can_cancel = req["state"] == "pending" and (caller.user == req["requester"] or caller.is_admin)
    return {
        "req": req,
        "policy_in_force": ctx.policy.digest,
        "evidence": _evidence(ctx, req, mlflow_ui=mlflow_ui),
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
    previous = aliases.rollback_target(ctx.db, model, alias)  # down the stack, never forward
    if tp is None:
        why = f"{alias!r} is not a target of the promotion policy."
    elif not caller.has_any(tp.rollback.roles):
        why = f"Rolling back {alias} needs one of: {', '.join(tp.rollback.roles)}."
    elif previous is None:
        why = "No earlier approved holder is left on the journal; nothing to roll back to."
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
