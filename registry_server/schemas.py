"""Request and response models of the REST API (they document the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AliasHistory",
    "AliasOut",
    "ApprovalOut",
    "AuditPage",
    "AuditVerify",
    "CommentIn",
    "MeOut",
    "PromotionIn",
    "PromotionOut",
    "PromotionPage",
    "TokenIn",
    "TokenIssued",
    "TokenList",
    "error_responses",
]

MAX_INT = 2**31 - 1  # ids and versions are 32-bit integers in the database

State = Literal["pending", "approved", "promoted", "rejected", "cancelled", "expired", "superseded"]
Role = Literal["requester", "approver", "admin"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromotionIn(_In):
    model: str = Field(min_length=1, description="Registered model name.")
    version: int = Field(ge=1, le=MAX_INT, description="Model version.")
    target: str = Field(min_length=1, description="Target alias, e.g. production.")
    evidence_digest: str = Field(
        pattern="^[0-9a-f]{64}$", description="SHA-256 of the version's evidence."
    )


class CommentIn(_In):
    comment: str = Field(default="", max_length=4000)


class TokenIn(_In):
    user: str = Field(min_length=1, max_length=200)
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


class ErrorOut(BaseModel):
    code: str
    message: str
    hint: str
    details: dict | None = None


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` documenting our error body for each status."""
    return {status: {"model": ErrorOut, "description": "Error"} for status in statuses}
