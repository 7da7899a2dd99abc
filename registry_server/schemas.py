"""Request and response models of the REST API (they document the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
]

MAX_INT = 2**31 - 1  # ids and versions are 32-bit integers in the database
NO_NUL = r"^[^\x00]*$"  # what the server refuses is in the schema: no NUL in any text
_TEXT = {"pattern": NO_NUL}  # documented; ``_In._no_nul`` refuses with a clear message

State = Literal[
    "pending", "approved", "promoted", "rejected", "cancelled", "expired", "superseded", "stale"
]
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


class PromotionPage(BaseModel):
    items: list[PromotionOut]
    total: int
    limit: int
    offset: int


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
        pattern=r"^https?://[^\s]+$", max_length=2000, description="Where to POST events."
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
            host = urlsplit(value).hostname or ""
            host.encode("idna")
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
