"""The audit page: events newest first, filtered and paged, each told as one sentence.

A sentence is a list of parts, each plain text or a link (to the request, the alias
history, the model version in MLflow), so the template escapes everything it prints.
Decisions (``approval``, ``rejected`` ...) read differently from the state changes they
cause (``approved``, ``promoted``): the last approval and the quorum it completes are two
events, and they should not look like one event twice.

Example:
    >>> parts = sentence({"action": "cancelled", "actor": "rita",
    ...     "payload": {"request_id": 3, "model": "m", "version": 2, "target": "production"}},
    ...     ui="/ui")
    >>> "".join(p["text"] for p in parts)
    'rita cancelled request #3 (m v2 to production)'
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select

from registry_server.db.models import AuditEvent
from registry_server.services import audit
from registry_server.services.context import ServerContext

__all__ = ["KINDS", "events_page", "sentence"]

PAGE_SIZE = 50
#: how an action reads: a person's decision, a state change, or an alias move
KINDS = {
    "requested": "request",
    "approval": "decision",
    "rejected": "decision",
    "cancelled": "decision",
    "approved": "state change",
    "expired": "state change",
    "superseded": "state change",
    "evidence_changed": "state change",
    "promoted": "alias move",
    "rolled_back": "alias move",
    "alias_drift_restored": "alias move",
}


def _t(text: Any) -> dict[str, Any]:
    return {"text": str(text), "href": None}


def _a(text: Any, href: str) -> dict[str, Any]:
    return {"text": str(text), "href": href}


def _request(p: dict[str, Any], ui: str, mlflow_ui: str | None) -> list[dict[str, Any]]:
    """``request #3 (m v2 to production)`` with links to the request, version and alias."""
    model, version, target = p.get("model"), p.get("version"), p.get("target")
    out = [_a(f"request #{p['request_id']}", f"{ui}/requests/{p['request_id']}"), _t(" (")]
    if mlflow_ui and model:
        out.append(
            _a(
                f"{model} v{version}",
                f"{mlflow_ui}/#/models/{quote(model, safe='')}/versions/{version}",
            )
        )
    else:
        out.append(_t(f"{model} v{version}"))
    out += [_t(" to "), _alias(model, target, ui, text=str(target)), _t(")")]
    return out


def _alias(model: Any, alias: Any, ui: str, *, text: str | None = None) -> dict[str, Any]:
    href = f"{ui}/aliases/{quote(str(model), safe='')}/{quote(str(alias), safe='')}"
    return _a(text or f"{model}@{alias}", href)


def sentence(event: dict[str, Any], *, ui: str, mlflow_ui: str | None = None) -> list[dict]:
    """The event as one readable line (a list of text/link parts)."""
    action, actor, p = event["action"], event["actor"], event["payload"]
    comment = [_t(f': "{p["comment"]}"')] if p.get("comment") else []
    if "request_id" in p:
        req = _request(p, ui, mlflow_ui)
        if action == "approval":
            quorum = p.get("quorum") or {}
            got = f" ({quorum.get('have')} of {quorum.get('need')} approvals)" if quorum else ""
            return [_t(f"{actor} approved "), *req, _t(got), *comment]
        if action == "approved":
            return [
                _t(f"Quorum reached with {actor}'s approval: "),
                *req,
                _t(" is now approved; the alias move is queued"),
            ]
        if action == "promoted":
            was = p.get("previous_version")
            return [
                _alias(p.get("model"), p.get("target"), ui),
                _t(
                    f" now points at v{p.get('version')} (was {f'v{was}' if was else 'unset'}), by "
                ),
                *req,
            ]
        if action == "superseded":
            return [*req, _t(f" was superseded by a request for v{p.get('by_version')}")]
        if action == "expired":
            return [*req, _t(" expired")]
        if action == "evidence_changed":
            return [_t("The evidence of "), *req, _t(" changed; earlier approvals no longer count")]
        verb = {"requested": "requested", "rejected": "rejected", "cancelled": "cancelled"}
        return [_t(f"{actor} {verb.get(action, action)} "), *req, *comment]
    if action == "rolled_back":
        return [
            _t(f"{actor} rolled back "),
            _alias(p.get("model"), p.get("alias"), ui),
            _t(f" from v{p.get('from_version')} to v{p.get('to_version')}"),
            *comment,
        ]
    if action == "alias_drift_restored":
        return [
            _alias(p.get("model"), p.get("alias"), ui),
            _t(
                f" was moved to v{p.get('found_version')} outside the registry; "
                f"restored to v{p.get('restored_version')}"
            ),
        ]
    details = ", ".join(f"{k} {v}" for k, v in sorted(p.items()) if k != "evidence_digest")
    return [_t(f"{actor} {action.replace('_', ' ')}" + (f": {details}" if details else ""))]


def _like_model(model: str) -> str:
    """A LIKE pattern for ``"model":"<model>"`` in the canonical JSON payload."""
    needle = json.dumps({"model": model}, ensure_ascii=False, separators=(",", ":"))[1:-1]
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def events_page(
    ctx: ServerContext,
    *,
    model: str = "",
    actor: str = "",
    action: str = "",
    before: int | None = None,
    limit: int = PAGE_SIZE,
) -> dict[str, Any]:
    """One page of events (newest first, ids below ``before``) matching the filters, the
    chain's verification, and the actions and actors there are to filter by."""
    conds = []
    if model:
        conds.append(AuditEvent.payload.like(_like_model(model), escape="\\"))
    if actor:
        conds.append(AuditEvent.actor == actor)
    if action:
        conds.append(AuditEvent.action == action)
    paged = [*conds, AuditEvent.id < before] if before else conds
    with ctx.db.read_sessions() as s:
        result = audit.verify(s)
        total = s.scalar(select(func.count()).select_from(AuditEvent).where(*conds)) or 0
        stmt = select(AuditEvent).where(*paged).order_by(AuditEvent.id.desc()).limit(limit + 1)
        rows = [audit.to_dict(r) for r in s.scalars(stmt)]
        actions = sorted(s.scalars(select(AuditEvent.action).distinct()))
        actors = sorted(s.scalars(select(AuditEvent.actor).distinct()))
    more, rows = len(rows) > limit, rows[:limit]
    return {
        "verify": result,
        "events": rows,
        "total": total,
        "next_before": rows[-1]["id"] if more and rows else None,
        "actions": actions,
        "actors": actors,
        "filters": {"model": model, "actor": actor, "action": action},
        "kinds": KINDS,
    }
