"""The alias journal: who held an alias from when to when; reads, history and rollback.

The current holder is read from the journal (one indexed row, no MLflow call), which is
what makes ``GET /v1/aliases/{model}/{alias}`` cheap.

Example:
    >>> current(ctx.db, "churn", "production")["version"]   # doctest: +SKIP
    3
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mlops.errors import AliasNotFound, ConflictError, PermissionDenied, PolicyViolation
from registry_server.db.models import AliasJournal
from registry_server.services import audit
from registry_server.services.context import Caller, ServerContext, utc

if TYPE_CHECKING:
    from registry_server.db.engine import Database

__all__ = ["AliasReader", "current", "history", "move_alias", "reconcile_protected", "rollback"]


def _not_found(model: str, alias: str) -> AliasNotFound:
    return AliasNotFound(
        f"Alias {alias!r} of model {model!r} has never been set through the registry server.",
        hint=f"Promote a version: POST /v1/promotions with target {alias!r}.",
    )


_CURRENT_SQL = (
    "SELECT version, from_at, request_id FROM alias_journal "
    "WHERE model = {m} AND alias = {a} AND to_at IS NULL ORDER BY id DESC LIMIT 1"
)


class AliasReader:
    """The hot read path: one constant query, no ORM, no MLflow.

    On SQLite each thread keeps its own read-only connection (WAL: readers never wait
    for the writer, and every statement sees the latest commit); on PostgreSQL it uses
    the pooled read engine.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._local = threading.local()
        self._path = db.sqlite_path if db.is_sqlite else None
        self._opened: list[sqlite3.Connection] = []

    def _sqlite(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            self._opened.append(conn)
        return conn

    def close(self) -> None:
        """Close the per-thread SQLite connections."""
        for conn in self._opened:
            conn.close()
        self._opened.clear()
        self._local = threading.local()

    def current(self, model: str, alias: str) -> dict[str, Any]:
        """``{"model", "alias", "version", "since", "request_id"}`` of the holder now."""
        if self._path is not None:
            row = (
                self._sqlite().execute(_CURRENT_SQL.format(m="?", a="?"), (model, alias)).fetchone()
            )
        else:
            with self.db.read_engine.connect() as conn:
                sql = _CURRENT_SQL.format(m="%s", a="%s")
                row = conn.exec_driver_sql(sql, (model, alias)).first()
        return _holder(model, alias, row)


def _holder(model: str, alias: str, row: Any) -> dict[str, Any]:
    if row is None:
        raise _not_found(model, alias)
    since = row[1] if isinstance(row[1], datetime) else datetime.fromisoformat(row[1])
    return {
        "model": model,
        "alias": alias,
        "version": row[0],
        "since": utc(since).isoformat(),
        "request_id": row[2],
    }


def current(db: Database, model: str, alias: str) -> dict[str, Any]:
    """The current holder: ``{"model", "alias", "version", "since", "request_id"}``."""
    sql = text(_CURRENT_SQL.format(m=":m", a=":a"))
    with db.read_engine.connect() as conn:
        row = conn.execute(sql, {"m": model, "a": alias}).first()
    return _holder(model, alias, row)


def history(db: Database, model: str, alias: str, *, limit: int = 100) -> dict[str, Any]:
    """Every holder of the alias, newest first."""
    stmt = (
        select(AliasJournal)
        .where(AliasJournal.model == model, AliasJournal.alias == alias)
        .order_by(AliasJournal.id.desc())
        .limit(limit)
    )
    with db.read_sessions() as s:
        items = [
            {
                "version": r.version,
                "from": utc(r.from_at).isoformat(),
                "to": utc(r.to_at).isoformat() if r.to_at else None,
                "request_id": r.request_id,
                "action": r.action,
            }
            for r in s.scalars(stmt)
        ]
    return {"items": items}


def move_alias(
    s: Session,
    ctx: ServerContext,
    *,
    model: str,
    alias: str,
    version: int,
    request_id: int | None,
    action: str = "promote",
) -> int | None:
    """Close the current journal row and open one for ``version``; the previous version."""
    stmt = select(AliasJournal).where(
        AliasJournal.model == model, AliasJournal.alias == alias, AliasJournal.to_at.is_(None)
    )
    if s.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    now = ctx.now()
    previous = None
    for row in s.scalars(stmt):
        row.to_at = now
        previous = row.version
    s.add(
        AliasJournal(
            model=model,
            alias=alias,
            version=version,
            from_at=now,
            request_id=request_id,
            action=action,
        )
    )
    s.flush()
    return previous


def rollback(
    ctx: ServerContext, caller: Caller, model: str, alias: str, *, comment: str = ""
) -> dict[str, Any]:
    """Move the alias back to the holder before the current one (policy rollback roles)."""
    tp = ctx.policy.rules(model, alias)
    if tp is None:
        raise PolicyViolation(
            f"Alias {alias!r} is not a target of the promotion policy; cannot roll it back.",
            rules=[{"rule": "target.known", "passed": False, "reason": f"{alias!r} unknown"}],
        )
    if not caller.has_any(tp.rollback.roles):
        raise PermissionDenied(
            f"User {caller.user!r} with roles {list(caller.roles)} may not roll back "
            f"{model}@{alias}; it needs one of {list(tp.rollback.roles)}.",
        )
    cur, prev = _rollback_pair(ctx.db, model, alias)
    ctx.gateway.set_alias(model, alias, prev.version)
    with ctx.db.session() as s:
        now_row = s.scalar(
            select(AliasJournal).where(
                AliasJournal.model == model,
                AliasJournal.alias == alias,
                AliasJournal.to_at.is_(None),
            )
        )
        if now_row is None or now_row.id != cur.id:
            raise ConflictError(
                f"{model}@{alias} moved while rolling back; reload and retry.",
            )
        move_alias(
            s,
            ctx,
            model=model,
            alias=alias,
            version=prev.version,
            request_id=prev.request_id,
            action="rollback",
        )
        payload = {
            "model": model,
            "alias": alias,
            "from_version": cur.version,
            "to_version": prev.version,
            "comment": comment,
        }
        audit.append(s, actor=caller.user, action="rolled_back", payload=payload, at=ctx.now())
    return current(ctx.db, model, alias)


def _rollback_pair(db: Database, model: str, alias: str) -> tuple[AliasJournal, AliasJournal]:
    with db.read_sessions() as s:
        rows = list(
            s.scalars(
                select(AliasJournal)
                .where(AliasJournal.model == model, AliasJournal.alias == alias)
                .order_by(AliasJournal.id.desc())
            )
        )
    if not rows or rows[0].to_at is not None:
        raise _not_found(model, alias)
    cur = rows[0]
    prev = next((r for r in rows[1:] if r.version != cur.version), None)
    if prev is None:
        raise ConflictError(
            f"{model}@{alias} only ever had version {cur.version}; nothing to roll back to.",
            hint="Promote another version instead.",
        )
    return cur, prev


def reconcile_protected(ctx: ServerContext) -> int:
    """Put back protected aliases moved in MLflow behind the server's back; count them.

    Each restore runs under the model+alias lock and re-reads the journal and the pending
    alias moves first, so a promotion finishing at the same moment is never undone.
    """
    protected = sorted(ctx.policy.protected_targets())
    if not protected:
        return 0
    with ctx.db.read_sessions() as s:
        rows = list(
            s.scalars(
                select(AliasJournal).where(
                    AliasJournal.alias.in_(protected), AliasJournal.to_at.is_(None)
                )
            )
        )
    fixed = 0
    for row in (r for r in rows if (tp := ctx.policy.rules(r.model, r.alias)) and tp.protected):
        if ctx.gateway.get_alias(row.model, row.alias) != row.version:
            fixed += _restore(ctx, row.id, row.model, row.alias)
    return fixed


def _restore(ctx: ServerContext, row_id: int, model: str, alias: str) -> bool:
    from registry_server.services._rows import lock_target
    from registry_server.services.outbox import pending_aliases

    with ctx.db.session() as s:
        lock_target(s, model, alias)
        holder = s.scalar(
            select(AliasJournal).where(
                AliasJournal.model == model,
                AliasJournal.alias == alias,
                AliasJournal.to_at.is_(None),
            )
        )
        if holder is None or holder.id != row_id or (model, alias) in pending_aliases(s):
            return False  # the server itself is moving it: not drift
        seen = ctx.gateway.describe_alias(model, alias)
        if seen.get("version") == holder.version:
            return False
        ctx.gateway.set_alias(model, alias, holder.version)
        payload = {
            "model": model,
            "alias": alias,
            "found_version": seen.get("version"),
            "restored_version": holder.version,
            "seen": seen,
            "where": ctx.gateway.registry_uri,
        }
        audit.append(
            s, actor="system", action="alias_drift_restored", payload=payload, at=ctx.now()
        )
    return True
