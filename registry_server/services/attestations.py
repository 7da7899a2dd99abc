"""Signed decisions: every promotion and rollback as an in-toto Statement in a DSSE envelope.

The subjects are what was put in place: the model version's files as MLflow stores them
(digest computed here, by the server, from MLflow) and the Bento the evidence names (its
digest as recorded with the evidence). The predicate names the evidence digest, the
policy digest and the approval rules in force, the approvals (who, when, for which
digest), the alias move and the previous holder.

:func:`prepare` reads MLflow before the move; :func:`record` signs and stores the
envelope in the move's own transaction; :func:`attach_pending` then puts it on the model
version in MLflow (``mlops/attestations/<digest>.json`` in its run, the digest in the tag
``mlops.attestation.<alias>``), retried by the background pass until it is there. That
is where ``mlops verify NAME@ALIAS`` finds it, offline, with only the public key.

Example:
    >>> prep = prepare(ctx, "churn", 3, bundle, digest)                    # doctest: +SKIP
    >>> with ctx.db.session() as s:                                         # doctest: +SKIP
    ...     row = record(s, ctx, prep, action="promote", previous=2, request=req)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.errors import MlopsError
from mlops.signatures import IN_TOTO, PREDICATE_TYPE, STATEMENT_TYPE
from registry_server.db.models import Attestation, PromotionRequest

if TYPE_CHECKING:
    from registry_server.services.context import ServerContext

__all__ = ["Prepared", "attach_pending", "for_request", "prepare", "record", "to_dict"]


@dataclass(frozen=True)
class Prepared:
    """What the statement's subjects need, read from MLflow before the alias moves."""

    model: str
    alias: str
    version: int
    evidence_digest: str | None
    model_digest: str
    bento_tag: str | None = None
    bento_digest: str | None = None


def prepare(
    ctx: ServerContext,
    model: str,
    alias: str,
    version: int,
    bundle: dict[str, Any] | None,
    evidence_digest: str | None,
) -> Prepared | None:
    """The subjects of the decision (``None`` when the server has no signing key).

    Raises the gateway's ``RegistryUnavailable`` if MLflow cannot be read: the move is
    retried later, so nothing moves unsigned.
    """
    if ctx.signing_key is None:
        return None
    package = (bundle or {}).get("package") or {}
    return Prepared(
        model=model,
        alias=alias,
        version=version,
        evidence_digest=evidence_digest,
        model_digest=ctx.gateway.model_digest(model, version),
        bento_tag=package.get("bento_tag"),
        bento_digest=package.get("bento_digest"),
    )


def record(
    s: Session,
    ctx: ServerContext,
    prep: Prepared | None,
    *,
    action: str,
    previous: int | None,
    request: PromotionRequest | None,
    approved_in: PromotionRequest | None = None,
    actor: str = "system",
    comment: str = "",
) -> Attestation | None:
    """Sign the decision and store it, in the caller's transaction (the alias move's).

    ``request`` is the promotion being applied; a rollback has none and names the request
    that once approved the version it restores as ``approved_in``.
    """
    if prep is None or ctx.signing_key is None:
        return None
    approving = request if request is not None else approved_in
    statement = _statement(ctx, prep, action, previous, approving, actor, comment)
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    envelope = ctx.signing_key.seal(payload, IN_TOTO)
    row = Attestation(
        request_id=request.id if request is not None else None,
        model=prep.model,
        alias=prep.alias,
        version=prep.version,
        action=action,
        digest=hashlib.sha256(payload).hexdigest(),
        envelope=json.dumps(envelope, sort_keys=True),
        key_id=ctx.signing_key.key_id,
        created_at=ctx.now(),
    )
    s.add(row)
    s.flush()
    return row


def _statement(
    ctx: ServerContext,
    prep: Prepared,
    action: str,
    previous: int | None,
    request: PromotionRequest | None,
    actor: str,
    comment: str,
) -> dict[str, Any]:
    subjects = [
        {"name": f"models:/{prep.model}/{prep.version}", "digest": {"sha256": prep.model_digest}}
    ]
    if prep.bento_tag and prep.bento_digest:
        subjects.append(
            {"name": f"bento:{prep.bento_tag}", "digest": {"sha256": prep.bento_digest}}
        )
    rules = ctx.policy.rules(prep.model, prep.alias)
    approvals = list(request.approvals) if request is not None else []
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "action": action,
            "at": ctx.now().isoformat(),
            "actor": actor,
            "comment": comment,
            "alias": {
                "model": prep.model,
                "alias": prep.alias,
                "version": prep.version,
                "previous_version": previous,
            },
            "evidence": {"digest": prep.evidence_digest},
            "policy": {
                "digest": ctx.policy.digest,
                "approvals": _approval_rules(rules),
                "evaluated_at": _quorum_time(request, approvals),
            },
            "request": None
            if request is None
            else {"id": request.id, "requester": request.requester},
            "approvals": [
                {
                    "user": a.user,
                    "roles": list(a.roles),
                    "decision": a.decision,
                    "digest": a.digest,
                    "at": _iso(a.at),
                }
                for a in approvals
            ],
        },
    }


def _approval_rules(rules: Any) -> dict[str, Any] | None:
    if rules is None:
        return None
    a = rules.approvals
    return {
        "count": a.count,
        "roles": list(a.roles),
        "exclude_requester": a.exclude_requester,
        "distinct": a.distinct,
        "ttl_seconds": a.ttl.total_seconds() if a.ttl is not None else None,
    }


def _quorum_time(request: PromotionRequest | None, approvals: list[Any]) -> str | None:
    """When the approvals were counted: the last decision before the request was approved."""
    if request is None or not approvals:
        return None
    return max(_iso(a.at) for a in approvals)


def _iso(value: datetime) -> str:
    from registry_server.services.context import utc

    return utc(value).isoformat()


def attach_pending(ctx: ServerContext, *, attestation_id: int | None = None) -> int:
    """Attach the stored envelopes not yet on their model version in MLflow; how many."""
    with ctx.db.read_sessions() as s:
        stmt = select(Attestation.id).where(Attestation.attached_at.is_(None))
        if attestation_id is not None:
            stmt = stmt.where(Attestation.id == attestation_id)
        ids = list(s.scalars(stmt.order_by(Attestation.id)))
    done = 0
    for row_id in ids:
        with ctx.db.read_sessions() as s:
            row = s.get(Attestation, row_id)
        error = None
        try:
            ctx.gateway.attach_attestation(
                row.model, row.version, row.alias, row.digest, row.envelope
            )
        except MlopsError as exc:
            error = exc.message[:2000]
        with ctx.db.session() as s:
            current = s.get(Attestation, row_id)
            if error is None:
                current.attached_at, current.attach_error = ctx.now(), None
                done += 1
            else:
                current.attach_error = error
    return done


def to_dict(row: Attestation) -> dict[str, Any]:
    """Wire form: the envelope and where it stands."""
    return {
        "id": row.id,
        "request_id": row.request_id,
        "model": row.model,
        "alias": row.alias,
        "version": row.version,
        "action": row.action,
        "digest": row.digest,
        "key_id": row.key_id,
        "created_at": _iso(row.created_at),
        "attached": row.attached_at is not None,
        "envelope": json.loads(row.envelope),
    }


def for_request(s: Session, request_id: int) -> Attestation | None:
    """The newest attestation of a promotion request (``None``: not promoted, or unsigned)."""
    stmt = select(Attestation).where(
        Attestation.request_id == request_id, Attestation.action == "promote"
    )
    return s.scalars(stmt.order_by(Attestation.id.desc())).first()
