"""The wire form of requests, read for a whole page at once: what the list and one
request's view cost.

A page is read in a fixed number of statements however many rows it has: the requests
with their count, approvals, alias moves and verifications (one join), and, under a ladder
policy, the holders of the aliases they wait on (one query). Rows are read as plain
columns, not ORM objects; the policy's rules are resolved once per model and target, and
the clock read once for the whole page.

Example:
    >>> with ctx.db.read_sessions() as s:                                  # doctest: +SKIP
    ...     rows, more, total = read_page(s, state="pending", limit=50, total=True)
    ...     views = request_views(ctx, s, rows)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, select
from sqlalchemy.orm import Session

from mlops.policy import Soak, TargetPolicy, soak
from registry_server.db.models import AliasJournal, Approval, Outbox, PromotionRequest
from registry_server.services.context import ServerContext, utc
from registry_server.services.journal import INTENT
from registry_server.services.verifier import VERIFY, verification_view
from registry_server.services.views import promotion_view

__all__ = ["read_page", "request_views"]

_R = PromotionRequest.__table__.c
_A = Approval.__table__.c
_REQUEST = (
    _R.id, _R.model, _R.version, _R.target, _R.evidence_digest, _R.requester, _R.state,
    _R.verdict, _R.created_at, _R.updated_at, _R.champion, _R.policy_digest,
)  # fmt: skip
_APPROVAL = (_A.id, _A.user, _A.roles, _A.decision, _A.comment, _A.digest, _A.at,
             _A.policy_digest)  # fmt: skip
_JOB = ("state", "payload", "attempts", "last_error", "next_attempt_at")
_WAITING = ("pending", "verifying")
#: what a page can be filtered on, and how
_FILTERS = {
    "request_id": lambda v: _R.id == v,
    "model": lambda v: _R.model == v,
    "target": lambda v: _R.target == v,
    "state": lambda v: _R.state == v,
    "before": lambda v: _R.id < v,
}


class _Row:
    """A request as read for its view: its columns, approvals, verification and move."""

    __slots__ = (*(c.name for c in _REQUEST), "approvals", "verify", "intent")


def read_page(
    s: Session, *, limit: int, offset: int = 0, total: bool = False, **filters: Any
) -> tuple[list[Any], bool, int | None]:
    """The requests matching ``filters`` (see ``_FILTERS``; ``None`` is no filter), newest
    first, whether more follow, and (``total``) how many match all filters but ``before``.

    Each request comes with its ``approvals`` (oldest first), its ``verify`` job and its
    alias move (``intent``, the first recorded of each, or ``None``): one statement,
    joining them (and the count) to the page, so one snapshot.
    """
    used = tuple(k for k in _FILTERS if filters.get(k) is not None)
    params = {k: filters[k] for k in used} | {"limit": limit + 1, "offset": offset}
    width, a_width = len(_REQUEST), len(_APPROVAL)
    names = _Row.__slots__[:width]
    rows: list[Any] = []
    row: Any = None
    values: Any = None
    for values in s.connection().execute(_page_statement(used, total), params).fetchall():
        if row is None or row.id != values[0]:
            row = _Row()
            for name, value in zip(names, values, strict=False):
                setattr(row, name, value)
            row.approvals = []
            row.verify = _job(values, width + a_width)
            row.intent = _job(values, width + a_width + len(_JOB))
            rows.append(row)
        aid = values[width]
        if aid is not None and (not row.approvals or row.approvals[-1].id != aid):
            a = values[width : width + a_width]  # a request without approvals joins nulls
            row.approvals.append(SimpleNamespace(**dict(zip(_APPROVAL_NAMES, a, strict=True))))
    count = None
    if total:  # an empty page has no row to carry it
        count = values[-1] if values is not None else _count(s, used, filters)
    return rows[:limit], len(rows) > limit, count


def _count(s: Session, used: tuple[str, ...], filters: dict[str, Any]) -> int:
    counted = tuple(k for k in used if k != "before")
    stmt = _count_statement(counted)
    return s.connection().execute(stmt, {k: filters[k] for k in counted}).scalar_one()


_APPROVAL_NAMES = tuple(c.name for c in _APPROVAL)


def _job(values: Any, at: int) -> SimpleNamespace | None:
    if values[at] is None:  # its state: never null for a row that exists
        return None
    return SimpleNamespace(**dict(zip(_JOB, values[at : at + len(_JOB)], strict=True)))


@functools.cache
def _page_statement(used: tuple[str, ...], total: bool) -> Select:
    """The page query for these filters, built once (values are bound parameters)."""
    page = (
        select(*_REQUEST)
        .where(*(_FILTERS[k](bindparam(k)) for k in used))
        .order_by(_R.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery("page")
    )
    outbox = Outbox.__table__
    verify, intent = outbox.alias("verify"), outbox.alias("intent")
    joined = (
        page.outerjoin(Approval.__table__, _A.request_id == page.c.id)
        .outerjoin(verify, and_(verify.c.request_id == page.c.id, verify.c.kind == VERIFY))
        .outerjoin(intent, and_(intent.c.request_id == page.c.id, intent.c.kind == INTENT))
    )
    jobs = [verify.c[n] for n in _JOB] + [intent.c[n] for n in _JOB]
    if total:
        counted = tuple(k for k in used if k != "before")
        jobs.append(_count_statement(counted).scalar_subquery().label("total"))
    return (
        select(page, *_APPROVAL, *jobs)
        .select_from(joined)
        .order_by(page.c.id.desc(), _A.id, verify.c.id, intent.c.id)
    )


@functools.cache
def _count_statement(used: tuple[str, ...]) -> Select:
    filters = (_FILTERS[k](bindparam(k)) for k in used)
    return select(func.count()).select_from(PromotionRequest.__table__).where(*filters)


def request_views(ctx: ServerContext, s: Session, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """The wire form of each of ``rows`` (from :func:`read_page`), at one time, under one
    policy; the holders their ladders wait on read in one query."""
    if not rows:
        return []
    policy, now = ctx.policy, ctx.now()
    rules: dict[tuple[str, str], TargetPolicy | None] = {}
    for r in rows:
        if (r.model, r.target) not in rules:
            rules[r.model, r.target] = policy.rules(r.model, r.target)
    held = _holders(s, rows, rules)
    views = []
    for r in rows:
        tp = rules[r.model, r.target]
        step = _soak(tp, r, held, now) if r.state in _WAITING else None
        view = promotion_view(r, tp, now, soak=step)
        view["verification"] = verification_view(r.verify) if r.verify is not None else None
        if r.state == "verifying":
            steps = ", ".join((view["verification"] or {}).get("steps", []))
            view["blocked_by"].append(f"verification: the server is re-deriving {steps}")
        intent = r.intent if r.state == "approved" else None
        if intent is not None and intent.state == "pending":
            why = intent.last_error or "queued"
            retry = utc(intent.next_attempt_at).isoformat()
            view["blocked_by"].append(
                f"alias move pending (attempts {intent.attempts}, next {retry}): {why}"
            )
        views.append(view)
    return views


def _holders(
    s: Session, rows: Sequence[Any], rules: dict[tuple[str, str], TargetPolicy | None]
) -> dict[tuple[str, str], Any]:
    """(model, alias) -> the open journal row of each alias a waiting row's ladder needs."""
    wanted = set()
    for r in rows:
        tp = rules[r.model, r.target]
        if r.state in _WAITING and tp is not None and tp.requires is not None:
            wanted.add((r.model, tp.requires.held))
    if not wanted:
        return {}
    j = AliasJournal.__table__.c
    stmt = (
        select(j.model, j.alias, j.version, j.from_at)
        .where(
            j.model.in_(sorted({m for m, _ in wanted})),
            j.alias.in_(sorted({a for _, a in wanted})),
            j.to_at.is_(None),
        )
        .order_by(j.id.desc())
    )
    out: dict[tuple[str, str], Any] = {}
    for row in s.connection().execute(stmt):
        out.setdefault((row.model, row.alias), row)  # the newest open row, as journal.holder
    return out


def _soak(
    tp: TargetPolicy | None, r: Any, held: dict[tuple[str, str], Any], now: datetime
) -> Soak | None:
    """:func:`registry_server.services.ladder.soak_of` from the page's journal rows."""
    if tp is None or tp.requires is None:
        return None
    row = held.get((r.model, tp.requires.held))
    since = utc(row.from_at) if row is not None and row.version == r.version else None
    return soak(tp, since, now)
