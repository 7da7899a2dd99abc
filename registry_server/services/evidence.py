"""Read a version's evidence from MLflow and recompute its digest (never trust the tag).

The bundle is parsed and schema-checked by the library's own :mod:`mlops.evidence`, so the
server, a notebook and a pipeline stage hash exactly the same bytes.

Example:
    >>> bundle, digest = current_evidence(gateway, "churn", 3)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.errors import EvidenceMismatch
from mlops.evidence import digest_of, from_json
from registry_server.mlflow_gateway import EvidenceArtifact, MlflowGateway

if TYPE_CHECKING:
    from registry_server.services.context import ServerContext

__all__ = ["checked_evidence", "current_evidence", "digest_of"]


def checked_evidence(
    ctx: ServerContext, actor: str, model: str, version: int
) -> tuple[dict[str, Any], str]:
    """:func:`current_evidence`, recording an ``evidence_tampered`` audit event on a mismatch.

    Evidence that no longer matches its tag, its version or its run was edited in place:
    the call is refused (the :class:`EvidenceMismatch` propagates) and the attempt stays in
    the audit log, in its own transaction, whatever the caller does next.

    Example:
        >>> checked_evidence(ctx, "ann", "churn", 3)  # doctest: +SKIP
    """
    try:
        return current_evidence(ctx.gateway, model, version)
    except EvidenceMismatch as exc:
        from registry_server.services import audit

        payload = {"model": model, "version": version, "reason": exc.message}
        with ctx.db.session() as s:
            audit.append(s, actor=actor, action="evidence_tampered", payload=payload, at=ctx.now())
        raise


def current_evidence(
    gateway: MlflowGateway, model: str, version: int
) -> tuple[dict[str, Any], str]:
    """The evidence bundle of ``model``/``version`` and its recomputed digest."""
    artifact = gateway.fetch_evidence(model, version)
    bundle = from_json(artifact.data).to_dict()  # schema-checked; EvidenceError if malformed
    digest = digest_of(bundle)
    if digest != artifact.tagged_digest:
        raise EvidenceMismatch(
            f"Evidence {artifact.path!r} of {model!r} v{version} hashes to {digest}, "
            f"but the version's tag says {artifact.tagged_digest}.",
        )
    named = bundle.get("model") or {}
    if named.get("name") != model or named.get("version") != version:
        raise EvidenceMismatch(
            f"Evidence of {model!r} v{version} describes "
            f"{named.get('name')!r} v{named.get('version')}.",
        )
    _check_against_run(bundle, artifact, f"{model!r} v{version}")
    return bundle, digest


def _check_against_run(bundle: dict[str, Any], artifact: EvidenceArtifact, what: str) -> None:
    """The evidence must name the version's own run and the data that run recorded."""
    run_id = (bundle.get("model") or {}).get("run_id")
    if artifact.run_id and run_id != artifact.run_id:
        raise EvidenceMismatch(
            f"Evidence of {what} names run {run_id!r}, but MLflow says the version "
            f"comes from run {artifact.run_id!r}.",
            hint="Collect the evidence for this version again with `mlops.evidence.collect`.",
        )
    if artifact.run_datasets is None:
        return
    claimed = tuple(
        sorted((d.get("path", ""), d.get("md5", "")) for d in bundle["lineage"]["datasets"])
    )
    if claimed != artifact.run_datasets:
        raise EvidenceMismatch(
            f"Evidence of {what} claims training data {list(claimed)}, but its run "
            f"recorded {list(artifact.run_datasets)}.",
            hint="Collect the evidence again: its lineage must be the run's own.",
        )
