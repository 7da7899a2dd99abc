"""The policy in force: read from its file, reloaded when the file changes, kept by digest.

Every worker watches the same file (:func:`poll`: its modification time and size first,
then the SHA-256 of its bytes) and puts a changed, valid policy in force without restart;
``POST /v1/policy/reload`` does the same at once. A file that does not parse is refused:
the old policy stays in force, the error is logged and audited (``policy_rejected``), once
per distinct bad file per worker. Each policy ever in force is kept in ``policies`` by its
digest, and one ``policy_loaded`` audit event marks each change whichever worker saw it
first, so several workers converge on the file and the history has no duplicates.

Example:
    >>> reload(ctx, actor="root", force=True)["digest"]   # doctest: +SKIP
    '9ba838b2...'
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mlops.errors import NotFoundError, PolicyError, PolicyViolation
from mlops.policy import Policy, check, parse_policy
from registry_server.db.models import AuditEvent, PolicyVersion, PromotionRequest
from registry_server.services import audit
from registry_server.services.context import ServerContext, utc

__all__ = [
    "PolicyFile",
    "get_version",
    "history",
    "policy_in_force_violation",
    "poll",
    "reload",
    "start",
]

log = logging.getLogger("registry_server")
_POLICY_LOCK = 727_002  # pg advisory lock id: one writer of the policy history at a time


@dataclass
class PolicyFile:
    """What this worker last saw of the policy file (the file is the source of truth)."""

    path: Path
    stamp: tuple[int, int] | None = None  # (mtime_ns, size)
    file_digest: str | None = None  # SHA-256 of the bytes last read, valid or not
    error: str | None = None  # why the file last read was refused


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def start(ctx: ServerContext, path: Path | str) -> None:
    """Load the policy at start (an invalid file stops the server) and record it.

    Example:
        >>> start(ctx, "promotion-policy.yaml")   # doctest: +SKIP
    """
    path = Path(path)
    try:
        stamp, data = _stamp(path), path.read_bytes()
    except OSError as exc:
        raise PolicyError(
            f"Cannot read the policy file {str(path)!r}: {exc.strerror}.",
            hint="Create promotion-policy.yaml or set MLOPS_POLICY_PATH.",
        ) from exc
    source = data.decode("utf-8", errors="replace")
    ctx.policy = parse_policy(source)
    ctx.policy_file = PolicyFile(path, stamp, hashlib.sha256(data).hexdigest())
    with ctx.db.session() as s:
        _put_in_force(s, ctx, ctx.policy, source, path, actor="startup", previous=None)


def poll(ctx: ServerContext) -> dict[str, Any]:
    """One look at the file: reload it if its stamp or bytes changed (the background loop).

    Example:
        >>> poll(ctx)["changed"]   # doctest: +SKIP
        False
    """
    return reload(ctx, actor="system", force=False)


def reload(ctx: ServerContext, *, actor: str, force: bool) -> dict[str, Any]:
    """Read the file and put it in force if it is valid and differs from the policy now.

    ``force`` (the admin call) reads the file even if its stamp did not change, and
    raises :class:`PolicyError` for an invalid file (the old policy stays in force).
    Returns ``{"changed", "digest", "previous", "error"}``.
    """
    pf: PolicyFile = ctx.policy_file
    previous = ctx.policy.digest
    try:
        stamp = _stamp(pf.path)
        if not force and stamp == pf.stamp:
            return _result(False, ctx, previous, pf.error)
        data = pf.path.read_bytes()
    except OSError as exc:
        return _refuse(ctx, pf, None, f"cannot read {str(pf.path)!r}: {exc.strerror}", force)
    pf.stamp = stamp
    file_digest = hashlib.sha256(data).hexdigest()
    if not force and file_digest == pf.file_digest:
        return _result(False, ctx, previous, pf.error)
    pf.file_digest = file_digest
    source = data.decode("utf-8", errors="replace")
    try:
        policy = parse_policy(source)
    except PolicyError as exc:
        return _refuse(ctx, pf, file_digest, exc.message, force, exc)
    pf.error = None
    if policy.digest == previous:
        return _result(False, ctx, previous, None)
    with ctx.db.session() as s:
        _put_in_force(s, ctx, policy, source, pf.path, actor=actor, previous=previous)
    ctx.policy = policy
    log.info("policy %s in force (was %s)", policy.digest[:12], previous[:12])
    return _result(True, ctx, previous, None)


def _result(changed: bool, ctx: ServerContext, previous: str, error: str | None) -> dict:
    return {"changed": changed, "digest": ctx.policy.digest, "previous": previous, "error": error}


def _refuse(
    ctx: ServerContext,
    pf: PolicyFile,
    file_digest: str | None,
    why: str,
    force: bool,
    exc: PolicyError | None = None,
) -> dict[str, Any]:
    """Keep the old policy; log and audit the refusal (once per bad file unless forced)."""
    first = pf.error != why
    pf.error = why
    if first or force:
        log.error("policy file %s refused, %s stays in force: %s", pf.path, ctx.policy.digest, why)
        payload = {
            "path": str(pf.path),
            "file_digest": file_digest,
            "error": why[:2000],
            "in_force": ctx.policy.digest,
        }
        with ctx.db.session() as s:
            audit.append(s, actor="system", action="policy_rejected", payload=payload, at=ctx.now())
    if force:
        raise PolicyError(
            f"The policy file {str(pf.path)!r} was refused; policy {ctx.policy.digest[:12]} "
            f"stays in force: {why}",
            hint="Fix the file (the message names the key), then POST /v1/policy/reload.",
            keys=list(getattr(exc, "keys", None) or []),
        )
    return _result(False, ctx, ctx.policy.digest, why)


def _lock(s: Session) -> None:
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _POLICY_LOCK})


def _last_loaded(s: Session) -> str | None:
    payload = s.scalar(
        select(AuditEvent.payload)
        .where(AuditEvent.action == "policy_loaded")
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    return json.loads(payload)["digest"] if payload else None


def _put_in_force(
    s: Session,
    ctx: ServerContext,
    policy: Policy,
    source: str,
    path: Path,
    *,
    actor: str,
    previous: str | None,
) -> None:
    """Keep ``policy`` by digest and audit the change, once whichever worker sees it first."""
    _lock(s)
    if s.get(PolicyVersion, policy.digest) is None:
        s.add(
            PolicyVersion(
                digest=policy.digest,
                source=source,
                body=policy.to_dict(),
                path=str(path),
                loaded_at=ctx.now(),
                loaded_by=actor,
            )
        )
        s.flush()
    last = _last_loaded(s)
    if last != policy.digest:
        payload = {"digest": policy.digest, "previous": previous or last, "path": str(path)}
        audit.append(s, actor=actor, action="policy_loaded", payload=payload, at=ctx.now())


# --- reads ----------------------------------------------------------------------------------
def _item(row: PolicyVersion, in_force: str) -> dict[str, Any]:
    return {
        "digest": row.digest,
        "loaded_at": utc(row.loaded_at).isoformat(),
        "loaded_by": row.loaded_by,
        "path": row.path,
        "in_force": row.digest == in_force,
    }


def history(ctx: ServerContext, *, limit: int = 100) -> dict[str, Any]:
    """Every policy this server has run under, newest first, and the one in force now.

    Example:
        >>> history(ctx)["in_force"] == ctx.policy.digest   # doctest: +SKIP
        True
    """
    in_force = ctx.policy.digest
    with ctx.db.read_sessions() as s:
        stmt = select(PolicyVersion).order_by(PolicyVersion.loaded_at.desc()).limit(limit)
        items = [_item(r, in_force) for r in s.scalars(stmt)]
    error = ctx.policy_file.error if ctx.policy_file is not None else None
    return {"in_force": in_force, "file_error": error, "items": items}


def get_version(ctx: ServerContext, digest: str) -> dict[str, Any]:
    """One kept policy: its YAML text and parsed form (a prefix of 8+ characters will do).

    Example:
        >>> get_version(ctx, "9ba838b2")["source"].startswith("version: 1")   # doctest: +SKIP
        True
    """
    with ctx.db.read_sessions() as s:
        rows = []
        if len(digest) >= 8:
            stmt = select(PolicyVersion).where(PolicyVersion.digest.startswith(digest)).limit(2)
            rows = list(s.scalars(stmt))
        if len(rows) != 1:
            raise NotFoundError(
                f"No single kept policy with digest {digest!r}"
                f"{' (the prefix is ambiguous)' if len(rows) > 1 else ''}.",
                hint="List the kept policies with GET /v1/policy/history.",
            )
        row = rows[0]
        return {**_item(row, ctx.policy.digest), "source": row.source, "body": row.body}


def policy_in_force_violation(
    req: PromotionRequest, bundle: dict, policy: Policy
) -> PolicyViolation | None:
    """Why ``policy`` refuses ``req``, opened under another policy (``None``: it does not).

    A reload may have made the checks stricter since the request was opened, so its
    evidence must pass the policy in force at each approval and again at the alias move.

    Example:
        >>> policy_in_force_violation(req, bundle, ctx.policy)      # doctest: +SKIP
        PolicyViolation('The policy changed since request 7 was opened (...')
    """
    if req.policy_digest in (None, policy.digest):
        return None  # opened under this policy: checked when it was opened
    verdict = check(bundle, policy, req.target, model=req.model)
    if verdict.passed:
        return None
    failed = "; ".join(f"{r.rule}: {r.reason}" for r in verdict.failures)
    return PolicyViolation(
        f"The policy changed since request {req.id} was opened ({req.policy_digest[:12]} -> "
        f"{policy.digest[:12]}); under the policy in force {req.model!r} v{req.version} may "
        f"not go to {req.target!r}: {failed}.",
        hint=f"Cancel this request (POST /v1/promotions/{req.id}/cancel) and open a new one once "
        "the evidence passes the policy in force (GET /v1/policy/history shows both).",
        rules=[r.to_dict() for r in verdict.failures],
    )
