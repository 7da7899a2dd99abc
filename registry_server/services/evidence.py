"""Read a version's evidence from MLflow and recompute its digest (never trust the tag).

Example:
    >>> digest_of({"schema": 1})[:12]
    '67d6291b3014'
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mlops.errors import EvidenceError, EvidenceMismatch
from registry_server.mlflow_gateway import MlflowGateway
from registry_server.services.audit import canonical_json

__all__ = ["current_evidence", "digest_of"]


def digest_of(obj: Any) -> str:
    """SHA-256 hex of the canonical JSON of ``obj`` (same as ``mlops.evidence.digest_of``)."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def current_evidence(gateway: MlflowGateway, model: str, version: int) -> tuple[dict, str]:
    """The evidence bundle of ``model``/``version`` and its recomputed digest."""
    artifact = gateway.fetch_evidence(model, version)
    bundle = _parse(artifact.data, artifact.path, f"{model!r} v{version}")
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
    return bundle, digest


def _parse(data: bytes, path: str, what: str) -> dict[str, Any]:
    try:
        from mlops.evidence import from_json
    except ImportError:  # the library without its evidence module: plain JSON
        from_json = None
    if from_json is not None:
        return from_json(data).to_dict()  # schema-checked by the library
    try:
        bundle = json.loads(data)
    except ValueError as exc:
        raise EvidenceError(f"Evidence {path!r} of {what} is not valid JSON.") from exc
    if not isinstance(bundle, dict):
        raise EvidenceError(f"Evidence {path!r} of {what} is not a JSON object.")
    return bundle
