"""Request and response models of the REST API (they document the OpenAPI schema)."""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from starlette.responses import Response

from mlops.client import State
from mlops.identity import MAX_USER_NAME, USER_NAME_PATTERN

__all__ = [
    "AliasHistory",
    "AliasOut",
    "ApprovalOut",
    "AuditPage",
    "AuditVerify",
    "CommentIn",
    "DeliveryList",
    "DeliveryOut",
    "MeOut",
    "PolicyDryRunIn",
    "PolicyDryRunOut",
    "PolicyHistory",
    "PolicyReloadOut",
    "PolicyVersionOut",
    "PromotionIn",
    "PromotionOut",
    "PromotionPage",
    "SecretIn",
    "SecretOut",
    "TokenIn",
    "TokenIssued",
    "TokenList",
    "WebhookCreated",
    "WebhookIn",
    "WebhookList",
    "WebhookOut",
    "error_responses",
    "json_response",
]

MAX_INT = 2**31 - 1  # ids and versions are 32-bit integers in the database
NO_NUL = r"^[^\x00]*$"  # what the server refuses is in the schema: no NUL in any text
_TEXT = {"pattern": NO_NUL}  # documented; ``_In._no_nul`` refuses with a clear message

Role = Literal["requester", "approver", "admin"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(t, str) and "\x00" in t for t in texts):
            raise ValueError("must not contain a NUL character")
        return value


class PromotionIn(_In):
    model: str = Field(min_length=1, json_schema_extra=_TEXT, description="Registered model name.")
    version: int = Field(
        ge=1, le=MAX_INT, strict=True, description="Model version (a JSON integer)."
    )
    target: str = Field(
        min_length=1,
        json_schema_extra=_TEXT,
        description="Target alias of the policy, e.g. production.",
    )
    evidence_digest: str = Field(
        pattern="^[0-9a-f]{64}$", description="SHA-256 of the version's evidence."
    )

    @field_validator("version", mode="before")
    @classmethod
    def _integral(cls, value: object) -> object:
        """``3.0`` is the JSON integer 3 (JSON Schema's "integer"); ``3.5``, ``"3"`` are not."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class CommentIn(_In):
    comment: str = Field(default="", max_length=4000, json_schema_extra=_TEXT)


class TokenIn(_In):
    user: str = Field(
        min_length=1,
        max_length=MAX_USER_NAME,
        description="User name: ASCII letters, digits and . _ - @ +, starting and ending "
        "with a letter or digit (compared case-insensitively; a second spelling of an "
        "existing user is refused with 409).",
        json_schema_extra={"pattern": USER_NAME_PATTERN},  # checked after NFKC, in the service
    )
    roles: list[Role] = Field(min_length=1)


class ApprovalOut(BaseModel):
    user: str
    decision: Literal["approve", "reject"]
    comment: str
    digest: str
    at: str
    counts: bool
    why_not: str | None
    policy_digest: str | None = Field(
        default=None, description="Digest of the policy in force when the decision was taken."
    )


class RuleOut(BaseModel):
    rule: str
    passed: bool
    reason: str


class VerdictOut(BaseModel):
    passed: bool | None
    rules: list[RuleOut]


class QuorumOut(BaseModel):
    have: int
    need: int


class ChampionOut(BaseModel):
    version: int | None
    run_id: str | None


class DifferenceOut(BaseModel):
    what: str = Field(description="The value, e.g. evaluation.metrics.candidate.accuracy.")
    bundle: object = Field(description="What the evidence bundle states.")
    recomputed: object = Field(description="What the server re-derived.")


class VerificationOut(BaseModel):
    state: Literal["running", "verified", "unverified", "unverifiable", "void"]
    steps: list[str] = Field(description="What is re-derived (the policy's verify).")
    attempts: int
    code: str | None = Field(
        default=None,
        description="evidence_verified, evidence_unverified or evidence_unverifiable.",
    )
    reason: str | None = None
    checked: int | None = Field(default=None, description="Values compared.")
    differences: list[DifferenceOut] = []


class SoakOut(BaseModel):
    held: str = Field(description="The alias the version must hold first (ladder step).")
    for_seconds: float
    since: str | None = Field(description="When the version took it; null: not holding it.")
    until: str | None
    left_seconds: float | None
    done: bool


class ExpiringOut(BaseModel):
    user: str
    expires_at: str
    left_seconds: float


class PromotionOut(BaseModel):
    id: int
    model: str
    version: int
    target: str
    evidence_digest: str
    requester: str
    state: State
    created_at: str
    updated_at: str
    approvals: list[ApprovalOut]
    verdict: VerdictOut
    quorum: QuorumOut
    blocked_by: list[str]
    champion: ChampionOut | None = Field(
        default=None,
        description="The alias holder the verdict was judged against (version null: none); "
        "null when the target's verdict does not depend on it.",
    )
    verification: VerificationOut | None = Field(
        default=None,
        description="The server's re-derivation of the evidence (policy `verify`): null "
        "when the target's policy asks for none.",
    )
    soak: SoakOut | None = Field(
        default=None,
        description="A pending request's ladder step (requires.held): the soak time left.",
    )
    expiring: list[ExpiringOut] = Field(
        default_factory=list,
        description="Counted approvals in the last quarter of their ttl: they stop counting "
        "at expires_at.",
    )
    policy_digest: str | None = Field(
        default=None, description="Digest of the policy in force when the request was opened."
    )


class PromotionPage(BaseModel):
    items: list[PromotionOut]
    total: int
    limit: int
    offset: int
    next_before: int | None = Field(
        default=None,
        description="Pass as ``before`` for the next (older) page; null on the last page.",
    )


class AliasOut(BaseModel):
    model: str
    alias: str
    version: int
    since: str
    request_id: int | None
    attention: str | None = Field(
        default=None,
        description="Why a person must decide, e.g. 'alias_holder_missing': the recorded "
        "holder is gone or changed in MLflow and the server wrote nothing.",
    )


class AliasHistoryItem(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    version: int
    from_: str = Field(alias="from")
    to: str | None
    request_id: int | None
    action: str


class AliasHistory(BaseModel):
    items: list[AliasHistoryItem]


class LineageDatasetOut(BaseModel):
    md5: str
    path: str | None
    rev: str | None


class LineageVersionOut(BaseModel):
    model: str
    version: int
    run_id: str
    uses: list[str] = Field(description="How the run used the data: training, evaluation.")
    aliases: list[str] = Field(description="Every alias the version holds in MLflow now.")


class RollbackPlanOut(BaseModel):
    version: int | None = Field(
        description="The newest earlier approved holder that did not use the data; "
        "null when there is none (promote a clean version instead)."
    )
    request_id: int | None
    steps: int = Field(description="Rollbacks (POST .../rollback) needed to reach it.")
    through: list[int] = Field(description="Affected holders passed on the way down.")
    reason: str


class LineageHolderOut(BaseModel):
    model: str
    alias: str
    version: int
    since: str
    rollback: RollbackPlanOut


class LineageAffected(BaseModel):
    dataset: LineageDatasetOut
    versions: list[LineageVersionOut]
    holders: list[LineageHolderOut]


class AuditEventOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    payload: dict
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_after: int | None


class AuditVerify(BaseModel):
    ok: bool
    count: int
    first_bad_id: int | None
    reason: str | None
    checkpoint: dict[str, Any] | None = Field(
        default=None, description="The signed checkpoint checked against (count, head)."
    )
    mode: Literal["full", "incremental"] = "full"


class CheckpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    envelope: dict[str, Any] = Field(
        description="A signed checkpoint (DSSE envelope) kept outside the server, as the "
        "audit_checkpoint webhook delivered it."
    )


class AuditCheckpointOut(BaseModel):
    count: int
    head_id: int
    head_hash: str
    at: str
    envelope: dict[str, Any]


class AttestationOut(BaseModel):
    id: int
    request_id: int | None
    model: str
    alias: str
    version: int
    action: str
    digest: str = Field(description="SHA-256 of the envelope's payload (the Statement).")
    key_id: str
    created_at: str
    attached: bool = Field(description="Attached to the model version in MLflow yet.")
    envelope: dict[str, Any] = Field(description="The DSSE envelope of the in-toto Statement.")


class KeysOut(BaseModel):
    key_id: str
    public_key: str = Field(description="Ed25519 public key (PEM) the server signs with.")


class TokenIssued(BaseModel):
    id: str
    user: str
    roles: list[str]
    token: str


class TokenInfo(BaseModel):
    id: str
    user: str
    roles: list[str]
    created_at: str
    revoked: bool


class TokenList(BaseModel):
    items: list[TokenInfo]


class MeOut(BaseModel):
    user: str
    roles: list[str]


WebhookEvent = Literal[
    "*",
    "requested",
    "approval",
    "approved",
    "promoted",
    "rejected",
    "cancelled",
    "expired",
    "superseded",
    "evidence_changed",
    "evidence_tampered",
    "champion_changed",
    "rollback_requested",
    "rolled_back",
    "rollback_void",
    "ladder_voided",
    "policy_loaded",
    "policy_rejected",
    "alias_drift_restored",
    "alias_holder_missing",
    "alias_unbacked_removed",
    "token_created",
    "token_revoked",
    "webhook_created",
    "webhook_deleted",
    "webhook_secret_added",
    "webhook_secret_dropped",
    "audit_checkpoint",  # a signed head of the audit chain, to keep outside the server
]


def _secret_ok(value: str | None) -> str | None:
    from registry_server.services.webhook_signing import parse_secret

    if value is not None:
        parse_secret(value)  # ValueError -> 422 naming the field
    return value


class WebhookIn(_In):
    url: str = Field(
        pattern=r"^https?://[^\s\x00]+$", max_length=2000, description="Where to POST events."
    )
    events: list[WebhookEvent] = Field(
        min_length=1, max_length=20, description="Audit actions to send; '*' for all."
    )
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        json_schema_extra=_TEXT,
        description="Signing secret, whsec_<base64 of 24-64 bytes> (any other text is used "
        "as its UTF-8 bytes); generated if omitted; shown once, in whsec_ form.",
    )

    _check_secret = field_validator("secret")(_secret_ok)

    @field_validator("url")
    @classmethod
    def _url_has_a_host(cls, value: str) -> str:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            host = parts.hostname or ""
            host.encode("idna")
            parts.port  # noqa: B018 - a port that is not a number in 0-65535 raises here
        except (ValueError, UnicodeError) as exc:
            raise ValueError(f"{value!r} is not a valid http(s) URL: {exc}") from exc
        if not host:
            raise ValueError(f"{value!r} has no host name")
        return value


class SecretIn(_In):
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        json_schema_extra=_TEXT,
        description="The new signing secret (as for POST /v1/webhooks); generated if omitted.",
    )
    overlap_seconds: int = Field(
        default=86400,
        ge=0,
        le=30 * 86400,
        description="How long the current secrets keep signing beside the new one "
        "(0: stop now; default one day, at most 30 days).",
    )

    _check_secret = field_validator("secret")(_secret_ok)


class SecretOut(BaseModel):
    id: str
    created_at: str
    expires_at: str | None = Field(description="When it stops signing (null: until rotated).")


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    created_by: str
    created_at: str
    secrets: list[SecretOut] = Field(description="Active signing secrets (never their value).")


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The new signing secret, whsec_<base64>: shown only now.")
    secret_id: str


class WebhookList(BaseModel):
    items: list[WebhookOut]


class DeliveryOut(BaseModel):
    id: str
    webhook_id: str
    event: str
    audit_id: int
    state: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: int
    next_attempt_at: str
    last_status: int | None
    last_error: str | None
    created_at: str
    delivered_at: str | None


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class ErrorOut(BaseModel):
    code: str
    message: str
    hint: str
    details: dict | None = None


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` documenting our error body for each status."""
    return {status: {"model": ErrorOut, "description": "Error"} for status in statuses}


# --- the policy: history, reload, dry-run ---------------------------------------------------
class PolicyDryRunIn(_In):
    policy: str = Field(
        min_length=1,
        max_length=65_536,  # escaped in JSON it stays under the body limit (1 MiB)
        json_schema_extra=_TEXT,
        description="The new promotion policy, as YAML text (the file's content).",
    )


class PolicyItem(BaseModel):
    digest: str
    loaded_at: str = Field(description="When a worker first put it in force.")
    loaded_by: str = Field(description="'startup', 'system' (the file changed) or an admin.")
    path: str | None
    in_force: bool


class PolicyHistory(BaseModel):
    in_force: str = Field(description="Digest of the policy in force in this worker.")
    file_error: str | None = Field(
        description="Why the policy file as it is now was refused (null: it is in force)."
    )
    items: list[PolicyItem]


class PolicyVersionOut(PolicyItem):
    source: str = Field(description="The YAML text it was loaded from.")
    body: dict = Field(description="The parsed policy (ttl in seconds).")


class PolicyReloadOut(BaseModel):
    changed: bool
    digest: str = Field(description="The policy in force after the reload.")
    previous: str
    error: str | None


class RuleState(BaseModel):
    passed: bool
    reason: str


class RuleChange(BaseModel):
    rule: str
    old: RuleState | None = Field(description="Under the policy in force (null: no such rule).")
    new: RuleState | None = Field(description="Under the new policy (null: no such rule).")
    changed: bool


class _Judged(BaseModel):
    model: str
    version: int
    old_passed: bool | None = None
    new_passed: bool | None = None
    change: Literal["blocks", "unblocks", "same"] | None = None
    rules: list[RuleChange] = Field(default_factory=list)
    error: str | None = Field(default=None, description="Why it could not be judged.")


class DryRunRequest(_Judged):
    id: int
    target: str


class DryRunHolder(_Judged):
    alias: str


class PolicyDryRunOut(BaseModel):
    old_digest: str
    new_digest: str
    requests: list[DryRunRequest]
    holders: list[DryRunHolder]
    summary: dict[str, int]


def json_response(model: type[BaseModel], body: Any, status_code: int = 200) -> Response:
    """``body`` validated against ``model`` and serialized, as FastAPI's ``response_model``
    does, in the calling thread.

    A sync route that returns a dict has FastAPI validate it in a second trip to the thread
    pool; on the busiest reads that trip costs more than the validation. The route keeps
    ``response_model=model`` for the OpenAPI schema.
    """
    adapter = _adapter(model)
    data = adapter.dump_json(adapter.validate_python(body))
    return Response(data, status_code, media_type="application/json")


@functools.cache
def _adapter(model: type[BaseModel]) -> TypeAdapter:
    return TypeAdapter(model)
