"""Signed audit checkpoints: the chain head (count and hash) under the server's key.

A hash chain alone does not stop someone who can write the database: they can delete the
newest events, or edit one and recompute every later hash. A checkpoint signs the head of
the chain on every promotion and rollback and at least every ``checkpoint_every`` events;
:func:`verify` then checks the chain against the newest checkpoint whose signature holds,
so a shortened chain (fewer events than signed) or a rewritten one (another hash at the
signed position) is named. Checkpoints also go out as the webhook event
``audit_checkpoint``, to be kept where the database's writers cannot reach; one kept
outside can be handed back to :func:`verify`.

``incremental=True`` starts from the newest valid checkpoint instead of the first event:
O(events since), not O(all events); the full walk stays the default.

Example:
    >>> with ctx.db.read_sessions() as s:                      # doctest: +SKIP
    ...     verify(s, ctx.signing_key)["ok"]
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mlops.errors import VerifySignatureInvalid
from mlops.signatures import CHECKPOINT_TYPE
from registry_server.db.models import AuditCheckpoint, AuditEvent
from registry_server.services.audit import GENESIS, canonical_json, event_hash
from registry_server.services.webhooks import enqueue_event

if TYPE_CHECKING:
    from registry_server.signing import SigningKey

__all__ = [
    "CHECKPOINTED",
    "EVENT",
    "after_append_hook",
    "newest",
    "newest_row",
    "opened",
    "row_to_dict",
    "verify",
]

CHECKPOINTED = frozenset({"promoted", "rolled_back"})
EVENT = "audit_checkpoint"


def after_append_hook(key: SigningKey, every: int) -> Callable[[Session, AuditEvent], None]:
    """What :func:`registry_server.services.audit.append` calls after each event."""

    def after_append(session: Session, row: AuditEvent) -> None:
        last = session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1))
        last_id, last_count = (last.head_id, last.count) if last else (0, 0)
        if row.action not in CHECKPOINTED and row.id - last_id < every:
            return
        since = session.scalar(
            select(func.count()).where(AuditEvent.id > last_id, AuditEvent.id <= row.id)
        )
        _sign(session, key, count=last_count + int(since or 0), row=row)

    return after_append


def _sign(session: Session, key: SigningKey, *, count: int, row: AuditEvent) -> None:
    body = {"count": count, "head_id": row.id, "head_hash": row.hash, "at": row.at}
    envelope = key.seal(canonical_json(body), CHECKPOINT_TYPE)
    session.add(
        AuditCheckpoint(
            count=count,
            head_id=row.id,
            head_hash=row.hash,
            envelope=json.dumps(envelope, sort_keys=True),
            key_id=key.key_id,
            created_at=_at(row.at),
        )
    )
    session.flush()
    payload = {"checkpoint": body, "envelope": envelope}
    enqueue_event(session, event=EVENT, audit_id=row.id, at=row.at, actor="system", payload=payload)


def _at(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


def opened(key: SigningKey, envelope: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint signed in ``envelope``; :class:`VerifySignatureInvalid` if it is not
    this server's signature or not a checkpoint."""
    body = json.loads(key.open(envelope, CHECKPOINT_TYPE))
    if not isinstance(body, dict) or not {"count", "head_id", "head_hash"} <= set(body):
        raise VerifySignatureInvalid(f"The signed payload is not an audit checkpoint: {body!r}.")
    return body


def newest(session: Session, key: SigningKey) -> tuple[dict[str, Any] | None, str | None]:
    """The newest stored checkpoint whose signature verifies, and why a newer one did not."""
    problem = None
    for row in session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc())):
        try:
            return opened(key, json.loads(row.envelope)), problem
        except (VerifySignatureInvalid, ValueError) as exc:
            problem = problem or f"stored checkpoint {row.id} does not verify: {exc}"
    return None, problem


def verify(
    session: Session,
    key: SigningKey | None,
    *,
    checkpoint: dict[str, Any] | None = None,
    incremental: bool = False,
) -> dict[str, Any]:
    """Walk the chain and check it against a signed checkpoint (``checkpoint``: an envelope
    kept outside; default: the newest stored one). Names the first event that is wrong."""
    problem = None
    if checkpoint is not None:
        try:
            if key is None:
                raise VerifySignatureInvalid("this server has no signing key")
            cp = opened(key, checkpoint)
        except VerifySignatureInvalid as exc:
            why = f"the checkpoint given is not signed by this server: {exc.message}"
            return _result(False, 0, None, why, None, "full")
    elif key is not None:
        cp, problem = newest(session, key)
    else:
        cp = None
    if problem is not None:
        return _result(False, 0, None, problem, cp, "full")
    if incremental and cp is not None:
        return _walk_from(session, cp)
    return _walk(session, cp, GENESIS, 0, 0, "full")


def _walk_from(session: Session, cp: dict[str, Any]) -> dict[str, Any]:
    head = session.get(AuditEvent, cp["head_id"])
    if head is None or head.hash != cp["head_hash"] or not _hash_ok(head):
        why = "the event at the signed checkpoint is gone or rewritten"
        return _result(False, cp["count"], cp["head_id"], why, cp, "incremental")
    before = session.scalar(select(func.count()).where(AuditEvent.id <= head.id))
    if before != cp["count"]:
        why = f"{before} events up to the checkpoint, but {cp['count']} were signed"
        return _result(False, before, cp["head_id"], why, cp, "incremental")
    return _walk(session, cp, head.hash, cp["count"], head.id, "incremental")


def _hash_ok(row: AuditEvent) -> bool:
    try:
        payload = json.loads(row.payload)
    except ValueError:
        return False
    event = {"at": row.at, "actor": row.actor, "action": row.action, "payload": payload}
    return event_hash(row.prev_hash, event) == row.hash


def _walk(
    session: Session, cp: dict[str, Any] | None, prev: str, count: int, after: int, mode: str
) -> dict[str, Any]:
    stmt = (
        select(AuditEvent)
        .where(AuditEvent.id > after)
        .order_by(AuditEvent.id)
        .execution_options(yield_per=500)
    )
    for row in session.scalars(stmt):
        count += 1
        if row.prev_hash != prev:
            why = "prev_hash does not match the hash of the event before"
            return _result(False, count, row.id, why, cp, mode)
        if not _hash_ok(row):
            return _result(
                False, count, row.id, "hash does not match the event's content", cp, mode
            )
        if cp is not None and count == cp["count"] and row.hash != cp["head_hash"]:
            why = f"event {count} differs from the signed checkpoint: the chain was rewritten"
            return _result(False, count, row.id, why, cp, mode)
        prev = row.hash
    if cp is not None and count < cp["count"]:
        signed = cp["count"]
        why = f"the chain has {count} events, but a checkpoint signed {signed}: events were deleted"
        return _result(False, count, None, why, cp, mode)
    return _result(True, count, None, None, cp, mode)


def _result(
    ok: bool, count: int, bad: int | None, reason: str | None, cp: dict | None, mode: str
) -> dict[str, Any]:
    return {
        "ok": ok,
        "count": count,
        "first_bad_id": bad,
        "reason": reason,
        "checkpoint": cp,
        "mode": mode,
    }


def newest_row(session: Session) -> AuditCheckpoint | None:
    """The newest stored checkpoint row (its signature not checked)."""
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1))


def row_to_dict(row: AuditCheckpoint) -> dict[str, Any]:
    """Wire form of a stored checkpoint."""
    envelope = json.loads(row.envelope)
    return {
        "count": row.count,
        "head_id": row.head_id,
        "head_hash": row.head_hash,
        "at": json.loads(_payload(envelope)).get("at", ""),
        "envelope": envelope,
    }


def _payload(envelope: dict[str, Any]) -> bytes:
    import base64

    return base64.b64decode(envelope["payload"])
