"""Seeding for ``benchmarks/scale.py``: a big MLflow registry and a big registry database.

MLflow's tables are created by MLflow itself (its ``SqlAlchemyStore`` runs its migrations)
and filled with ``COPY`` in the columns MLflow's own create calls fill; the registry's by
its migrations, then bulk inserts (``COPY`` for the audit chain, whose hashes are computed with
:func:`registry_server.services.audit.event_hash`, so ``audit.verify`` checks real links).

Example:
    >>> holders = seed_mlflow(url, models=500, versions=10)      # doctest: +SKIP
    >>> seed_registry(registry_url, holders, requests_per_model=10, events=100_000)
    ... # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["PENDING_EVERY", "seed_mlflow", "seed_registry"]

#: one model in this many has a pending request (with one approval) besides its history
PENDING_EVERY = 10


@contextlib.contextmanager
def quiet() -> Any:
    """Silence what MLflow prints and logs at INFO inside the block."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def seed_mlflow(url: str, models: int, versions: int) -> list[tuple[str, int, int, int]]:
    """Registered models with versions, ``production`` on the newest, in MLflow's tables.

    Returns ``(name, version, model_created_ms, version_created_ms)`` of each holder.
    """
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    with quiet():  # creating the store runs MLflow's migrations, logged at INFO
        store = SqlAlchemyStore(url)
    now = int(time.time() * 1000)
    names = [f"scale-{i:06d}" for i in range(models)]
    raw = store.engine.raw_connection()
    try:
        with raw.cursor() as cur:  # the columns MLflow's own create calls fill
            sql = "COPY registered_models (name, creation_time, last_updated_time) FROM STDIN"
            with cur.copy(sql) as copy:
                for n in names:
                    copy.write_row((n, now, now))
            cols = (
                "name, version, creation_time, last_updated_time, current_stage, source, "
                "storage_location, status"
            )
            with cur.copy(f"COPY model_versions ({cols}) FROM STDIN") as copy:
                for n in names:
                    for v in range(1, versions + 1):
                        source = f"mlflow-artifacts:/seed/{n}/{v}"
                        copy.write_row((n, v, now + v, now + v, "None", source, "", "READY"))
            with cur.copy("COPY registered_model_aliases (name, alias, version) FROM STDIN") as c:
                for n in names:
                    c.write_row((n, "production", versions))
        raw.commit()
    finally:
        raw.close()
    _analyze(store.engine)
    store.engine.dispose()
    return [(n, versions, now, now + versions) for n in names]


def _analyze(engine: Any) -> None:
    """Planner statistics and the visibility map now, as autovacuum keeps them in a database
    that grew over time: right after a bulk load PostgreSQL has neither, MLflow's searches
    then take minutes instead of a second, and counts cannot use index-only scans."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")


def seed_registry(
    url: str, holders: list[tuple[str, int, int, int]], *, requests_per_model: int, events: int
) -> dict[str, int]:
    """The journal of those holders, each model's request history, and the audit chain."""
    from registry_server.db.engine import Database

    db = Database(url)
    db.upgrade()
    raw = db.engine.raw_connection()
    try:
        with raw.cursor() as cur:
            counts = _requests(cur, holders, requests_per_model)
            counts["audit_events"] = _audit(cur, holders, events)
        raw.commit()
        _analyze(db.engine)
    finally:
        raw.close()
        db.dispose()
    return counts


def _requests(cur: Any, holders: list, per_model: int) -> dict[str, int]:
    """History per model (older versions rejected or superseded, the holder promoted) plus a
    pending request on every ``PENDING_EVERY``-th model; the journal row of each holder."""
    base = datetime.now(UTC) - timedelta(days=30)
    requests = pending = 0
    cols = (
        "model, version, target, evidence_digest, requester, state, verdict, created_at, updated_at"
    )
    verdict = '{"passed": true, "rules": []}'
    with cur.copy(f"COPY promotion_requests ({cols}) FROM STDIN") as copy:
        for i, (name, version, _, _) in enumerate(holders):
            for j in range(per_model):
                state = "promoted" if j == per_model - 1 else ("rejected", "superseded")[j % 2]
                at = base + timedelta(seconds=i * per_model + j)
                number = max(1, version - per_model + 1 + j)
                row = (name, number, "production", "0" * 64, "seed", state, verdict, at, at)
                copy.write_row(row)
                requests += 1
            if i % PENDING_EVERY == 0:
                at = base + timedelta(days=1, seconds=i)
                row = (name, version + 1, "production", "1" * 64, "seed", "pending", verdict)
                row += (at, at)
                copy.write_row(row)
                requests += 1
                pending += 1
    cur.execute(
        'INSERT INTO approvals (request_id, "user", roles, decision, comment, digest, at) '
        "SELECT id, 'ann', '[\"approver\"]', 'approve', '', evidence_digest, created_at "
        "FROM promotion_requests WHERE state = 'pending'"
    )
    cols = "model, alias, version, from_at, action, model_created_ms, version_created_ms"
    with cur.copy(f"COPY alias_journal ({cols}) FROM STDIN") as copy:
        for name, version, model_ms, version_ms in holders:
            copy.write_row((name, "production", version, base, "promoted", model_ms, version_ms))
    return {"requests": requests, "pending": pending}


def _audit(cur: Any, holders: list, events: int) -> int:
    """``events`` hash-chained audit events, written with ``COPY``."""
    from registry_server.services.audit import GENESIS, canonical_json, event_hash

    at = datetime.now(UTC).isoformat()
    prev = GENESIS
    sql = "COPY audit_events (at, actor, action, payload, prev_hash, hash) FROM STDIN"
    with cur.copy(sql) as c:
        for k in range(events):
            name, version = holders[k % len(holders)][:2]
            payload = {"model": name, "version": version, "seq": k}
            event = {"at": at, "actor": "seed", "action": "approval", "payload": payload}
            h = event_hash(prev, event)
            c.write_row((at, "seed", "approval", canonical_json(payload).decode(), prev, h))
            prev = h
    return events
