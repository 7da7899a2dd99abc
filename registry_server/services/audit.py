"""Append-only audit events, each carrying the hash of the one before (tamper-evident).

``hash = sha256(prev_hash + canonical_json({"at", "actor", "action", "payload"}))``.

Example:
    >>> event_hash("0" * 64, {"at": "t", "actor": "a", "action": "x", "payload": {}})[:8]
    'eab402fe'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from registry_server.db.models import AuditEvent

__all__ = [
    "AFTER_APPEND",
    "GENESIS",
    "append",
    "canonical_json",
    "event_hash",
    "list_events",
    "verify",
]

GENESIS = "0" * 64
AFTER_APPEND = "mlops.audit.after_append"  # Session.info key: called with each new event
_AUDIT_LOCK = 727_001  # pg advisory lock id: one appender at a time keeps the chain linear


def canonical_json(obj: Any) -> bytes:
    """The canonical JSON bytes used for every digest in mlops."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(prev_hash: str, event: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the canonical event."""
    return hashlib.sha256(prev_hash.encode() + canonical_json(event)).hexdigest()


def append(
    session: Session, *, actor: str, action: str, payload: dict[str, Any], at: datetime
) -> AuditEvent:
    """Append one event in the caller's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK})
    prev = session.scalar(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
    prev = prev or GENESIS
    event = {"at": at.isoformat(), "actor": actor, "action": action, "payload": payload}
    row = AuditEvent(
        at=event["at"],
        actor=actor,
        action=action,
        payload=canonical_json(payload).decode(),
        prev_hash=prev,
        hash=event_hash(prev, event),
    )
    session.add(row)
    session.flush()
    from registry_server.services.webhooks import enqueue  # webhooks commit with the event

    enqueue(session, row)
    after = session.info.get(AFTER_APPEND)  # the signed checkpoints, when the app has a key
    if after is not None:
        after(session, row)
    return row


def to_dict(row: AuditEvent) -> dict[str, Any]:
    """Wire form of one event."""
    return {
        "id": row.id,
        "at": row.at,
        "actor": row.actor,
        "action": row.action,
        "payload": json.loads(row.payload),
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def list_events(session: Session, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """Events with ``id > after``, oldest first."""
    stmt = select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id).limit(limit)
    return [to_dict(r) for r in session.scalars(stmt)]


def verify(session: Session) -> dict[str, Any]:
    """Recompute the chain; name the first event whose link or hash is wrong.

    Rows are streamed as plain tuples (a server-side cursor on PostgreSQL) and each hash is
    computed over the payload as stored, which :func:`append` wrote canonically; only an
    event whose hash does not match that way is parsed and canonicalised again, to tell a
    bad payload from a bad hash.
    """
    prev, count = GENESIS, 0
    for event_id, at, actor, action, payload, prev_hash, stored in _stream(session):
        count += 1
        if prev_hash != prev:
            return _bad(count, event_id, "prev_hash does not match the hash of the event before")
        head = f'{{"action":{_str(action)},"actor":{_str(actor)},"at":{_str(at)},"payload":'
        if hashlib.sha256(f"{prev}{head}{payload}}}".encode()).hexdigest() != stored:
            try:
                data = json.loads(payload)
            except ValueError:
                return _bad(count, event_id, "payload is not valid JSON")
            event = {"at": at, "actor": actor, "action": action, "payload": data}
            if event_hash(prev, event) != stored:
                return _bad(count, event_id, "hash does not match the event's content")
        prev = stored
    return {"ok": True, "count": count, "first_bad_id": None, "reason": None}


def _stream(session: Session) -> Iterator[tuple]:
    """Every event as a plain tuple, oldest first; on PostgreSQL through a server-side
    cursor, so a million events stream in batches without ORM objects."""
    sql = "SELECT id, at, actor, action, payload, prev_hash, hash FROM audit_events ORDER BY id"
    if session.get_bind().dialect.name != "postgresql":
        yield from session.execute(text(sql)).tuples()
        return
    dbapi = session.connection().connection.dbapi_connection
    with dbapi.cursor(name="mlops_audit_verify") as cursor:
        cursor.itersize = 10_000
        cursor.execute(sql)
        yield from cursor


_str = json.JSONEncoder(ensure_ascii=False).encode  # a string as canonical_json writes it


def _bad(count: int, event_id: int, reason: str) -> dict[str, Any]:
    return {"ok": False, "count": count, "first_bad_id": event_id, "reason": reason}
