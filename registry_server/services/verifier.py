"""The verifier: re-derive a request's evidence from pinned inputs before it takes approvals.

A request to a target whose policy says ``verify: [validation, evaluation]`` is created in
state ``verifying`` with a ``verify`` job in the outbox table (same transaction). The
background pass (:func:`verify_due`, any worker) claims a due job with one conditional
UPDATE that leases it for ``verify_lease`` seconds, runs :func:`mlops.rederive.rederive`
(data fetched by DVC md5 from the remote, the model from MLflow) outside any transaction,
and writes the outcome in a second transaction that re-checks the job under a lock, so
of several workers one outcome is recorded. A worker that dies mid-way leaves the job
pending; after the lease another pass (or the restarted server) runs it again.

Outcomes (each an audit event of the same name):

- ``evidence_verified``: every re-derived value matched; the request becomes ``pending``
  (and, with no approvals required, moves the alias through the outbox);
- ``evidence_unverified``: values differ; the request ends ``rejected``, the event and
  the request's ``verification`` name each value (bundle vs recomputed);
- ``evidence_unverifiable``: the inputs cannot be had (a report on data with no DVC
  identity, an unknown model version), or data missing from the DVC remote or a
  transient failure (remote or MLflow unreachable) lasted ``verify_max_attempts`` tries
  (backing off 2, 4, 8... seconds: a pipeline pushes its data right after it requests);
  the request ends ``rejected``.

Example:
    >>> verify_due(ctx)  # number of verifications completed  # doctest: +SKIP
    1
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mlops.errors import (
    EvaluationError,
    EvidenceError,
    EvidenceMismatch,
    EvidenceUnverifiable,
    EvidenceUnverified,
    NotFoundError,
)
from registry_server.db.models import Outbox, PromotionRequest
from registry_server.services import ladder
from registry_server.services._rows import (
    lock_pending_outbox,
    lock_request,
    record_event,
    set_state,
)
from registry_server.services.context import ServerContext
from registry_server.services.evidence import checked_evidence
from registry_server.services.faults import crash_here

__all__ = [
    "VERIFY",
    "start_verification",
    "verification_view",
    "verify_due",
]

log = logging.getLogger("registry_server")

VERIFY = "verify"
_MAX_DIFFERENCES = 100  # named in the audit event; the count is always complete


def start_verification(
    s: Session, ctx: ServerContext, actor: str, req: PromotionRequest, steps: tuple[str, ...]
) -> None:
    """Put ``req`` in ``verifying`` and queue its job, in the caller's transaction."""
    set_state(ctx, req, "verifying")
    s.add(
        Outbox(
            kind=VERIFY,
            request_id=req.id,
            payload={"steps": list(steps)},
            state="pending",
            attempts=0,
            next_attempt_at=ctx.now(),
            created_at=ctx.now(),
        )
    )
    record_event(s, ctx, actor, "verification_started", req, steps=list(steps))


def verify_due(ctx: ServerContext, *, request_id: int | None = None) -> int:
    """Run every due verification (or ``request_id``'s); the number completed."""
    with ctx.db.read_sessions() as s:
        stmt = select(Outbox.id).where(
            Outbox.kind == VERIFY, Outbox.state == "pending", Outbox.next_attempt_at <= ctx.now()
        )
        if request_id is not None:
            stmt = stmt.where(Outbox.request_id == request_id)
        ids = list(s.scalars(stmt.order_by(Outbox.id)))
    return sum(_verify_one(ctx, job_id) for job_id in ids)


def verification_view(job: Outbox | Any) -> dict[str, Any]:
    """The wire form of the verification job ``job`` (an outbox row, or its columns)."""
    result = job.payload.get("result") or {}
    return {
        "state": result.get("state", "running" if job.state == "pending" else job.state),
        "steps": list(job.payload.get("steps", [])),
        "attempts": job.attempts,
        "code": result.get("code"),
        "reason": result.get("reason") or (job.last_error if job.state == "pending" else None),
        "checked": result.get("checked"),
        "differences": result.get("differences", []),
    }


# --- one job ----------------------------------------------------------------------------
def _claim(ctx: ServerContext, job_id: int) -> dict[str, Any] | None:
    """Lease the job for ``verify_lease`` seconds; ``None`` if another worker holds it."""
    with ctx.db.session() as s:
        now = ctx.now()
        claimed = s.execute(
            update(Outbox)
            .where(Outbox.id == job_id, Outbox.state == "pending", Outbox.next_attempt_at <= now)
            .values(
                next_attempt_at=now + timedelta(seconds=ctx.verify_lease),
                attempts=Outbox.attempts + 1,
            )
        )
        if claimed.rowcount != 1:
            return None
        job = s.get(Outbox, job_id)
        req = s.get(PromotionRequest, job.request_id)
        return {
            "steps": list(job.payload.get("steps", [])),
            "attempts": job.attempts,
            "request_id": req.id,
            "model": req.model,
            "version": req.version,
            "digest": req.evidence_digest,
            "state": req.state,
        }


def _verify_one(ctx: ServerContext, job_id: int) -> bool:
    job = _claim(ctx, job_id)
    if job is None:
        return False
    if job["state"] != "verifying":  # cancelled, rejected or superseded meanwhile
        return _finish(ctx, job_id, {"state": "void"})
    try:
        result = _rederive(ctx, job)
    except EvidenceUnverifiable as exc:
        if exc.details.get("missing_md5") and job["attempts"] < ctx.verify_max_attempts:
            _retry_later(ctx, job_id, exc)  # `dvc repro` requests, then `dvc push`
            return False
        result = _outcome("unverifiable", EvidenceUnverifiable.code, exc.message)
    except (EvidenceMismatch, EvidenceUnverified) as exc:
        result = _outcome("unverified", EvidenceUnverified.code, exc.message)
    except (EvidenceError, NotFoundError, EvaluationError) as exc:  # retrying cannot help
        why = f"The evidence cannot be re-derived: {exc.message}"
        result = _outcome("unverifiable", EvidenceUnverifiable.code, why)
    except Exception as exc:  # unreachable remote or MLflow, or a fault: retried, bounded
        if job["attempts"] < ctx.verify_max_attempts:
            _retry_later(ctx, job_id, exc)
            return False
        why = f"gave up after {job['attempts']} attempts: {type(exc).__name__}: {exc}"
        result = _outcome("unverifiable", EvidenceUnverifiable.code, why[:2000])
    crash_here(ctx, "mid_verification")
    return _finish(ctx, job_id, result)


def _rederive(ctx: ServerContext, job: dict[str, Any]) -> dict[str, Any]:
    from mlops.rederive import rederive

    bundle, digest = checked_evidence(ctx, "system", job["model"], job["version"])
    if digest != job["digest"]:
        raise EvidenceMismatch(
            f"The evidence of {job['model']!r} v{job['version']} changed while it was being "
            f"verified ({job['digest'][:12]} -> {digest[:12]})."
        )
    found = rederive(
        bundle,
        job["steps"],
        remote=ctx.dvc_remote_url,
        remote_config=ctx.dvc_remote_config,
        load_model=ctx.gateway.load_model,
        tolerance=ctx.verify_tolerance,
    )
    if found.ok:
        return {"state": "verified", "code": "evidence_verified", **found.to_dict()}
    named = "; ".join(str(d) for d in found.differences[:5])
    more = len(found.differences) - 5
    reason = f"{len(found.differences)} value(s) differ from the bundle: {named}" + (
        f"; and {more} more" if more > 0 else ""
    )
    out = _outcome("unverified", EvidenceUnverified.code, reason)
    diffs = found.to_dict()["differences"]
    return {**out, "steps": list(found.steps), "checked": found.checked, "differences": diffs}


def _outcome(state: str, code: str, reason: str) -> dict[str, Any]:
    return {"state": state, "code": code, "reason": reason, "differences": []}


def _retry_later(ctx: ServerContext, job_id: int, exc: Exception) -> None:
    log.warning("verification %s failed (retried): %s: %s", job_id, type(exc).__name__, exc)
    with ctx.db.session() as s:
        job = s.get(Outbox, job_id)
        job.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        job.next_attempt_at = ctx.next_retry(job.attempts)


def _finish(ctx: ServerContext, job_id: int, result: dict[str, Any]) -> bool:
    """Record the outcome once: the job is re-read under a lock, the request too."""
    from registry_server.services.outbox import apply_intents

    move = False
    with ctx.db.session() as s:
        job = lock_pending_outbox(s, job_id)
        if job is None:
            return False  # another worker recorded it
        req = lock_request(s, job.request_id)
        if req.state != "verifying":
            result = {"state": "void"}
        job.state, job.done_at, job.last_error = _JOB_STATE[result["state"]], ctx.now(), None
        job.payload = {**job.payload, "result": result}
        if result["state"] == "void":
            return False
        move = _apply(s, ctx, req, result)
        request_id = req.id
    if move:
        apply_intents(ctx, request_id=request_id)
    return True


_JOB_STATE = {"verified": "done", "unverified": "done", "unverifiable": "done", "void": "void"}


def _apply(s: Session, ctx: ServerContext, req: PromotionRequest, result: dict[str, Any]) -> bool:
    """Move the request on; True when an alias move was recorded (no approvals needed)."""
    from registry_server.services.outbox import record_alias_intent

    if result["state"] == "verified":
        set_state(ctx, req, "pending")
        record_event(
            s, ctx, "system", "evidence_verified", req,
            steps=result["steps"], checked=result["checked"],
        )  # fmt: skip
        tp = ctx.policy.rules(req.model, req.target)
        if tp is not None and tp.approvals.count == 0:
            step = ladder.soak_of(s, ctx, req, tp)
            if step is not None and not step.done:
                return False  # the ladder's own pass moves it once soaked
            record_alias_intent(s, ctx, "system", req)
            return True
        return False
    set_state(ctx, req, "rejected")
    diffs = result.get("differences", [])
    record_event(
        s, ctx, "system", result["code"], req,
        reason=result["reason"], differences=diffs[:_MAX_DIFFERENCES],
        differing=len(diffs),
    )  # fmt: skip
    return False
