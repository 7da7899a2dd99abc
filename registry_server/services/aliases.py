"""The alias journal: who held an alias from when to when; reads, history and rollback.

The current holder is read from the journal (one indexed row, no MLflow call), which is
what makes ``GET /v1/aliases/{model}/{alias}`` cheap.

Example:
    >>> current(ctx.db, "churn", "production")["version"]   # doctest: +SKIP
    3
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mlops.errors import (
    AliasNotFound,
    ConflictError,
    NothingToRollBack,
    PermissionDenied,
    PolicyViolation,
    RegistryUnavailable,
)
from registry_server.db.models import AliasJournal, Outbox
from registry_server.services import audit, journal, outbox
from registry_server.services._rows import lock_target
from registry_server.services.context import Caller, ServerContext, utc
from registry_server.services.faults import crash_here
from registry_server.services.holders import check_holder
from registry_server.services.journal import move_alias

if TYPE_CHECKING:
    from registry_server.db.engine import Database

__all__ = ["AliasReader", "current", "history", "move_alias", "rollback", "rollback_target"]


def _not_found(model: str, alias: str) -> AliasNotFound:
    return AliasNotFound(
        f"Alias {alias!r} of model {model!r} has never been set through the registry server.",
        hint=f"Promote a version: POST /v1/promotions with target {alias!r}.",
    )


_CURRENT_SQL = (
    "SELECT version, from_at, request_id, attention FROM alias_journal "
    "WHERE model = {m} AND alias = {a} AND to_at IS NULL ORDER BY id DESC LIMIT 1"
)


class AliasReader:
    """The hot read path: one constant query, no ORM, no MLflow.

    Each thread keeps its own connection: on SQLite a read-only one (WAL: readers never
    wait for the writer, and every statement sees the latest commit); on PostgreSQL one
    in autocommit, taken out of the pool, so a read is one round trip (the pool would add
    a liveness ping and a rollback to each) and the driver prepares the statement once.
    A PostgreSQL connection that broke (server restart) is replaced and the read retried.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._local = threading.local()
        self._path = db.sqlite_path if db.is_sqlite else None
        self._opened: list[Any] = []

    def _sqlite(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            self._opened.append(conn)
        return conn

    def _pg(self) -> Any:
        conn = getattr(self._local, "pg", None)
        if conn is None:
            fairy = self.db.read_engine.raw_connection()
            fairy.detach()  # ours for the thread's life, not the pool's
            conn = fairy.dbapi_connection
            conn.autocommit = True
            self._local.pg = conn
            self._opened.append(conn)
        return conn

    def _pg_row(self, model: str, alias: str) -> Any:
        sql = _CURRENT_SQL.format(m="%s", a="%s")
        dbapi = self.db.read_engine.dialect.dbapi
        for attempt in (1, 2):
            conn = self._pg()
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, (model, alias))
                    return cur.fetchone()
            except (dbapi.OperationalError, dbapi.InterfaceError):
                self._local.pg = None
                with contextlib.suppress(Exception):
                    conn.close()
                if attempt == 2:
                    raise
        return None  # pragma: no cover - the loop returns or raises

    def close(self) -> None:
        """Close the per-thread connections."""
        for conn in self._opened:
            conn.close()
        self._opened.clear()
        self._local = threading.local()

    def current(self, model: str, alias: str) -> dict[str, Any]:
        """``{"model", "alias", "version", "since", "request_id", "attention"}`` now."""
        if self._path is not None:
            row = (
                self._sqlite().execute(_CURRENT_SQL.format(m="?", a="?"), (model, alias)).fetchone()
            )
        else:
            row = self._pg_row(model, alias)
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
        "attention": row[3],  # e.g. "alias_holder_missing": a person must decide
    }


def current(db: Database, model: str, alias: str) -> dict[str, Any]:
    """The holder now: ``{"model", "alias", "version", "since", "request_id", "attention"}``.

    ``attention`` is ``None``, or why a person must decide (the recorded holder is gone or
    changed in MLflow, see :mod:`registry_server.services.drift`).
    """
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


def rollback(
    ctx: ServerContext, caller: Caller, model: str, alias: str, *, comment: str = ""
) -> dict[str, Any]:
    """Move the alias back down the journal to the approved holder before the current one.

    The journal is a stack of approved holders: rollback pops the top one, never moves
    forward to a version that was itself rolled back (that needs a new promotion request).
    The move goes through the outbox like a promotion: intent first (with a
    ``rollback_requested`` event), then MLflow, then the journal and ``rolled_back``; a crash
    anywhere ends, after restart, in exactly one move. Pending promotions of the alias end
    ``stale``: the champion they were judged against is leaving.

    Example:
        >>> rollback(ctx, Caller("bob", ("approver",)), "churn", "production")["version"]
        ... # doctest: +SKIP
        2
    """
    _may_roll_back(ctx, caller, model, alias)
    with ctx.db.read_sessions() as s:
        cur, prev = _rollback_pair(s, model, alias)
    check_holder(ctx, prev, alias=alias)  # the number must still name the approved model
    outbox_id = _record_rollback(ctx, caller, cur, prev, comment)
    crash_here(ctx, "after_intent")
    outbox.apply_intents(ctx, outbox_id=outbox_id)
    _rollback_outcome(ctx, outbox_id, cur, prev)
    return current(ctx.db, model, alias)


def rollback_target(db: Database, model: str, alias: str) -> dict[str, Any] | None:
    """``{"version", "request_id"}`` a rollback would go back to now; ``None``: nothing.

    Example:
        >>> rollback_target(ctx.db, "churn", "production")  # doctest: +SKIP
        {'version': 2, 'request_id': 5}
    """
    with db.read_sessions() as s:
        stack = journal.holder_stack(s, model, alias)
    if len(stack) < 2 or stack[-1].to_at is not None:
        return None
    return {"version": stack[-2].version, "request_id": stack[-2].request_id}


def _may_roll_back(ctx: ServerContext, caller: Caller, model: str, alias: str) -> None:
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


def _rollback_pair(s: Session, model: str, alias: str) -> tuple[AliasJournal, AliasJournal]:
    """The holder now and the approved holder below it on the journal stack."""
    stack = journal.holder_stack(s, model, alias)
    if not stack or stack[-1].to_at is not None:
        raise _not_found(model, alias)
    cur = stack[-1]
    if len(stack) < 2:
        rolled = cur.action == "rollback"
        why = (
            f"v{cur.version} was reached by a rollback and no earlier approved holder is left"
            if rolled
            else f"v{cur.version} is the only approved holder it ever had"
        )
        raise NothingToRollBack(
            f"{model}@{alias}: {why}; nothing to roll back to. A version that was rolled "
            "back is never rolled back to.",
            hint=f"To put another version in {alias!r}, open a promotion request for it "
            "(POST /v1/promotions, `mlops request`): it needs evidence and approvals again.",
            model=model,
            alias=alias,
            version=cur.version,
        )
    return cur, stack[-2]


def _record_rollback(
    ctx: ServerContext, caller: Caller, cur: AliasJournal, prev: AliasJournal, comment: str
) -> int:
    """The intent, under the alias lock, if ``cur`` still holds and no rollback is pending."""
    model, alias = cur.model, cur.alias
    with ctx.db.session() as s:
        lock_target(s, model, alias)
        now_row = journal.holder(s, model, alias, lock=True)
        if now_row is None or now_row.id != cur.id:
            raise ConflictError(f"{model}@{alias} moved while rolling back; reload and retry.")
        for intent in journal.pending_intents(s, model, alias):
            if intent.payload.get("action") == "rollback":
                raise ConflictError(
                    f"A rollback of {model}@{alias} to v{intent.payload['version']} is "
                    "already recorded and waits for MLflow.",
                    hint=f"Wait for it: GET /v1/aliases/{model}/{alias} shows the holder.",
                )
        why = f"{model}@{alias} is being rolled back from v{cur.version} to v{prev.version}"
        outbox.void_for_rollback(s, ctx, model, alias, why)
        payload = {
            "model": model,
            "alias": alias,
            "version": prev.version,
            "from_version": cur.version,
            "from_journal_id": cur.id,
            "to_journal_id": prev.id,
            "to_request_id": prev.request_id,
            "actor": caller.user,
            "comment": comment,
        }
        outbox_id = outbox.record_rollback_intent(s, ctx, payload)
        event = {k: payload[k] for k in ("model", "alias", "from_version", "comment")}
        event |= {"to_version": prev.version, "outbox_id": outbox_id}
        event["policy_digest"] = ctx.policy.digest
        audit.append(s, actor=caller.user, action="rollback_requested", payload=event, at=ctx.now())
    return outbox_id


def _rollback_outcome(
    ctx: ServerContext, outbox_id: int, cur: AliasJournal, prev: AliasJournal
) -> None:
    """Raise unless the rollback's intent is done (moved, or waiting for MLflow)."""
    with ctx.db.read_sessions() as s:
        intent = s.get(Outbox, outbox_id)
        state, error = intent.state, intent.last_error
    where = f"{cur.model}@{cur.alias}"
    if state == "void":
        raise ConflictError(f"{where} moved before the rollback was applied; nothing moved.")
    if state == "pending":
        raise RegistryUnavailable(
            f"The rollback of {where} from v{cur.version} to v{prev.version} is recorded, but "
            f"MLflow did not take it yet ({error}); the server retries it.",
            hint=f"No need to roll back again: GET /v1/aliases/{cur.model}/{cur.alias} shows "
            "the holder once it is applied.",
        )
