"""One tree of errors under :class:`MlopsError`.

Every error has a stable ``code`` (the wire name the registry server returns and the
client turns back into the same class), a ``message`` saying what happened and a
``hint`` saying what to do. Each class also subclasses the builtin a caller would
naturally catch, so ``except LookupError`` still works.

Example:
    >>> from mlops.errors import NotFoundError
    >>> err = NotFoundError("Model 'churn' has no version 7.", hint="List versions with ...")
    >>> err.code, isinstance(err, LookupError)
    ('not_found', True)
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AliasHolderMissing",
    "AliasNotFound",
    "AttestationMissing",
    "AuthenticationError",
    "ChampionChanged",
    "ConfigError",
    "ConflictError",
    "DataError",
    "DataNotTrackedError",
    "DataValidationFailed",
    "DatasetNotRecorded",
    "DatasetRefError",
    "EvaluationError",
    "EvidenceError",
    "EvidenceMismatch",
    "EvidenceUnverifiable",
    "EvidenceUnverified",
    "EvidenceVerifying",
    "FreezeWindowError",
    "GateError",
    "MissingDependency",
    "MlopsError",
    "ModelNotReady",
    "ModelVersionNotFound",
    "NotFoundError",
    "NotInRepoError",
    "NothingToRollBack",
    "PackagingError",
    "PermissionDenied",
    "PolicyError",
    "PolicyViolation",
    "RegistryError",
    "RegistryUnavailable",
    "RevisionNotFound",
    "SoakPending",
    "StaleDataError",
    "TrackingError",
    "UntrustedModelType",
    "VerificationFailed",
    "VerifyAliasMismatch",
    "VerifyApprovalsInsufficient",
    "VerifyBentoMismatch",
    "VerifyDataMismatch",
    "VerifyEvidenceMismatch",
    "VerifyKeyInvalid",
    "VerifyModelArtifactMismatch",
    "VerifySignatureInvalid",
    "error_class",
]

_BY_CODE: dict[str, type[MlopsError]] = {}


class MlopsError(Exception):
    """Base of every error raised by mlops.

    Args:
        message: what happened, naming the value that was wrong.
        hint: what to do about it.
        details: machine-readable extras (kept JSON-serialisable).
    """

    code: ClassVar[str] = "mlops_error"
    default_hint: ClassVar[str] = ""

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.details = details

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            _BY_CODE[cls.code] = cls

    def __str__(self) -> str:
        return f"{self.message} Hint: {self.hint}" if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ``{"code", "message", "hint"}`` (plus ``details`` if any)."""
        body: dict[str, Any] = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.details:
            body["details"] = self.details
        return body


def error_class(code: str) -> type[MlopsError]:
    """The error class registered for a wire ``code`` (``MlopsError`` if unknown)."""
    return _BY_CODE.get(code, MlopsError)


_BY_CODE[MlopsError.code] = MlopsError


# --- configuration and dependencies -------------------------------------------------
class ConfigError(MlopsError, ValueError):
    code = "config_error"
    default_hint = "Check the MLOPS_* environment variables and the arguments you passed."


class MissingDependency(MlopsError, ImportError):
    code = "missing_dependency"
    default_hint = "Install the missing package, e.g. `pip install mlops`."


# --- lookups ------------------------------------------------------------------------
class NotFoundError(MlopsError, LookupError):
    code = "not_found"
    default_hint = "Check the name, version or id you asked for."


class ModelVersionNotFound(NotFoundError):
    code = "model_version_not_found"
    default_hint = "List the registered versions with `mlops.registry.versions(name)`."


class AliasNotFound(NotFoundError):
    code = "alias_not_found"
    default_hint = "Set the alias first, or check its spelling with `mlops.registry.aliases(name)`."


# --- data (DVC) ---------------------------------------------------------------------
class DataError(MlopsError, ValueError):
    code = "data_error"
    default_hint = "Check the dataset path and that it is tracked with DVC."


class NotInRepoError(DataError):
    code = "not_in_dvc_repo"
    default_hint = "Run inside a DVC repository (`git init && dvc init`) or set MLOPS_DVC_ROOT."


class DataNotTrackedError(DataError):
    code = "data_not_tracked"
    default_hint = "Track it with `dvc add <path>` (or as a stage output in dvc.yaml) and commit."


class RevisionNotFound(DataError, LookupError):
    code = "revision_not_found"
    default_hint = "Use a commit, branch or tag that exists: `git log --oneline` lists them."


class StaleDataError(DataError):
    code = "stale_data"
    default_hint = "Run `dvc add <path>` (or `dvc repro`) and commit before versioning it."


class DatasetRefError(DataError):
    code = "invalid_dataset_ref"
    default_hint = (
        "Name the data as PATH@REV (a DVC-tracked path at a git rev) or by its DVC md5 "
        "(32 hex characters, plus '.dir' for a directory), e.g. "
        "`mlops.lineage.affected('data/train.csv@v1.0')`."
    )


class DatasetNotRecorded(NotFoundError):
    code = "dataset_not_recorded"
    default_hint = (
        "No MLflow run recorded that path at that rev: pass the DVC md5 instead, or resolve "
        "PATH@REV in the project with `mlops.lineage.affected('PATH@REV')`."
    )


class DataValidationFailed(MlopsError, ValueError):
    code = "data_validation_failed"
    default_hint = "Read the report's failed expectations; fix the data or the suite."

    def __init__(self, message: str, *, report: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.report = report


# --- tracking and registry (MLflow) ---------------------------------------------------
class TrackingError(MlopsError, RuntimeError):
    code = "tracking_error"
    default_hint = "Check MLOPS_TRACKING_URI and that the MLflow store is reachable."


class RegistryError(MlopsError, RuntimeError):
    code = "registry_error"
    default_hint = "Check the model name and version, and that the MLflow registry is reachable."


class ModelNotReady(RegistryError, ValueError):
    code = "model_not_ready"
    default_hint = (
        "Log the model again inside the run (mlops.log_model(model, name=...)) and register "
        "the new one; a logged model that failed has no files to serve."
    )


class UntrustedModelType(TrackingError, TypeError):
    code = "untrusted_model_type"
    default_hint = "Pass the types you trust: mlops.log_model(model, ..., trusted=[...])."


class RegistryUnavailable(RegistryError, ConnectionError):
    code = "registry_unavailable"
    default_hint = "Start the registry server (`mlops server`) or check MLOPS_REGISTRY_URL."


# --- evidence -------------------------------------------------------------------------
class EvaluationError(MlopsError, ValueError):
    code = "evaluation_error"
    default_hint = "Check the evaluation data, the target column and the metric names."


class PackagingError(MlopsError, RuntimeError):
    code = "packaging_error"
    default_hint = "Read the BentoML output above; check the model's requirements and signature."


class EvidenceError(MlopsError, ValueError):
    code = "evidence_error"
    default_hint = "Recreate the evidence with `mlops.evidence.collect(...)`."


class EvidenceMismatch(EvidenceError):
    code = "evidence_mismatch"
    default_hint = "The evidence changed since it was recorded; rebuild it and request again."


class EvidenceUnverified(EvidenceError):
    """The server re-ran a check of the evidence and got other values than the bundle."""

    code = "evidence_unverified"
    default_hint = (
        "The recorded evidence does not match what the pinned data and model give: build it "
        "again with `mlops.promote(...)` and open a new request."
    )


class EvidenceUnverifiable(EvidenceError):
    """The server could not re-derive the evidence (data not in the DVC remote, no label)."""

    code = "evidence_unverifiable"
    default_hint = (
        "Push the data the evidence names to the DVC remote (`dvc push`), record evidence "
        "with `mlops.promote(...)` from DVC-tracked data, and open a new request."
    )


# --- policy and the gate ----------------------------------------------------------------
class PolicyError(MlopsError, ValueError):
    code = "policy_error"
    default_hint = "Fix promotion-policy.yaml; the message names the key."


class PolicyViolation(MlopsError, ValueError):
    code = "policy_violation"
    default_hint = "Read the verdict: each failed rule says why. Fix the evidence, then retry."


class GateError(MlopsError, ValueError):
    code = "gate_error"
    default_hint = "Read the message: the gate refused this action."


class FreezeWindowError(GateError):
    code = "freeze_window"
    default_hint = "Wait until the freeze window ends, or ask an admin to change the policy."


class SoakPending(GateError):
    code = "soak_pending"
    default_hint = (
        "The version has not held the ladder's previous alias long enough yet: wait for "
        "the soak time the request shows, then approve."
    )


class ConflictError(MlopsError, RuntimeError):
    code = "conflict"
    default_hint = "Reload the resource; its state changed."


class AliasHolderMissing(ConflictError):
    code = "alias_holder_missing"
    default_hint = (
        "The version the journal recorded is gone or changed in MLflow; the server wrote "
        "nothing. Promote an approved version (POST /v1/promotions) to settle the alias."
    )


class ChampionChanged(ConflictError):
    code = "champion_changed"
    default_hint = (
        "The alias holder the evidence was judged against moved: evaluate the version again "
        "against the current holder and open a new request."
    )


class NothingToRollBack(ConflictError):
    code = "nothing_to_roll_back"
    default_hint = (
        "Rollback only goes back to an earlier approved holder; to put another version in "
        "the alias, open a promotion request for it."
    )


class EvidenceVerifying(ConflictError):
    """A request whose evidence the server is still re-deriving takes no decisions yet."""

    code = "evidence_verifying"
    default_hint = (
        "The server is re-deriving the evidence; wait until the request is pending "
        "(GET /v1/promotions/{id}), then approve."
    )


class AuthenticationError(MlopsError, PermissionError):
    code = "unauthenticated"
    default_hint = "Send `Authorization: Bearer <token>`; create one with `mlops token create`."


class PermissionDenied(MlopsError, PermissionError):
    code = "forbidden"
    default_hint = "Ask an admin for a token with the needed role."


# --- offline verification of a signed decision (``mlops verify``) ------------------
class VerificationFailed(MlopsError, ValueError):
    """One link of the chain from data to served Bento does not hold; ``details["link"]``."""

    code = "verification_failed"
    link: ClassVar[str] = "chain"
    default_hint = "Do not serve this version; see `mlops.verify(ref)` for the failing link."

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(
            f"link {self.link!r} failed: {message}", hint=hint, **{"link": self.link, **details}
        )


class AttestationMissing(VerificationFailed, LookupError):
    code = "verify_attestation_missing"
    link = "attestation"
    default_hint = "Promote the version through the registry server, which signs the decision."


class VerifySignatureInvalid(VerificationFailed):
    code = "verify_signature"
    link = "signature"
    default_hint = (
        "Check the public key is the server's (GET /v1/keys); an edited attestation never verifies."
    )


class VerifyAliasMismatch(VerificationFailed):
    code = "verify_alias"
    link = "alias"


class VerifyModelArtifactMismatch(VerificationFailed):
    code = "verify_model_artifact"
    link = "model_artifact"


class VerifyBentoMismatch(VerificationFailed):
    code = "verify_bento"
    link = "bento"


class VerifyEvidenceMismatch(VerificationFailed):
    code = "verify_evidence"
    link = "evidence"


class VerifyDataMismatch(VerificationFailed):
    code = "verify_data"
    link = "data"


class VerifyApprovalsInsufficient(VerificationFailed):
    code = "verify_approvals"
    link = "approvals"


class VerifyKeyInvalid(ConfigError):
    code = "verify_key_invalid"
    default_hint = "Pass the server's public key file (PEM), as `mlops key create` printed it."
