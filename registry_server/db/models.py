"""SQLAlchemy 2 models of the registry server (schema changes only via migrations).

Example:
    >>> from registry_server.db.models import Base
    >>> sorted(Base.metadata.tables)[:3]
    ['alias_journal', 'approvals', 'audit_events']
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "AliasJournal",
    "Approval",
    "Attestation",
    "AuditCheckpoint",
    "AuditEvent",
    "Base",
    "Outbox",
    "PolicyVersion",
    "PromotionRequest",
    "Token",
    "User",
    "Webhook",
    "WebhookDelivery",
    "WebhookSecret",
]

TS = DateTime(timezone=True)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class User(Base):
    """A person known to the server (created with their first token).

    ``identity`` is the normalised name (:func:`mlops.identity.normalise_identity`), unique:
    ``NULL`` only for a legacy row that collided with an older user (migration 0005).
    """

    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(TS)
    identity: Mapped[str | None] = mapped_column(
        String(200), nullable=True, unique=True, index=True
    )


class Token(Base):
    """A bearer token: only its SHA-256 is stored."""

    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name"), index=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(TS)
    revoked_at: Mapped[datetime | None] = mapped_column(TS, nullable=True)


class PromotionRequest(Base):
    """A request to move ``target`` of ``model`` to ``version``."""

    __tablename__ = "promotion_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(400))
    version: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(200))
    evidence_digest: Mapped[str] = mapped_column(String(64))
    requester: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20), index=True)
    verdict: Mapped[dict[str, Any]] = mapped_column(JSON)
    previous_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)
    #: the champion the verdict was judged against, ``{"version", "run_id"}`` (version
    #: null: no holder); null when the target's verdict does not depend on the holder
    champion: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: digest of the policy in force when the request was opened (null: before 0009)
    policy_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approvals: Mapped[list[Approval]] = relationship(
        back_populates="request", order_by="Approval.id", lazy="selectin"
    )

    __table_args__ = (
        Index("ix_promotion_model_target_state", "model", "target", "state"),
        Index("ix_promotion_state_id", "state", "id"),  # a state's newest page, any depth
    )


class Approval(Base):
    """One decision (approve or reject) on a request, bound to the digest the user saw."""

    __tablename__ = "approvals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("promotion_requests.id"), index=True)
    user: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(JSON)
    decision: Mapped[str] = mapped_column(String(10))
    comment: Mapped[str] = mapped_column(Text, default="")
    digest: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(TS)
    #: digest of the policy in force when the decision was taken (null: before 0009)
    policy_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request: Mapped[PromotionRequest] = relationship(back_populates="approvals")


class AliasJournal(Base):
    """Which version held an alias from when to when (``to_at`` null: current holder).

    A holder is recorded by identity, not only by number: the run, the evidence digest
    and MLflow's own creation times of the registered model and of the version (a deleted
    and re-registered name gets new ones). ``attention`` is set (with ``attention_at``) when
    the recorded holder is gone or changed in MLflow: the server then writes nothing and
    waits for a person to promote or roll back.
    """

    __tablename__ = "alias_journal"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(400))
    alias: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    from_at: Mapped[datetime] = mapped_column(TS)
    to_at: Mapped[datetime | None] = mapped_column(TS, nullable=True)
    request_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(20))
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    evidence_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_created_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    version_created_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attention: Mapped[str | None] = mapped_column(String(40), nullable=True)
    attention_at: Mapped[datetime | None] = mapped_column(TS, nullable=True)

    __table_args__ = (Index("ix_alias_journal_lookup", "model", "alias", "to_at"),)


class AuditEvent(Base):
    """Append-only, hash-chained audit event (``at`` and ``payload`` stored as hashed)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(60))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class PolicyVersion(Base):
    """A policy the server ran under, by digest: its YAML text and when it was first loaded."""

    __tablename__ = "policies"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    path: Mapped[str | None] = mapped_column(Text, nullable=True)
    loaded_at: Mapped[datetime] = mapped_column(TS, index=True)
    loaded_by: Mapped[str] = mapped_column(String(200))


class Outbox(Base):
    """An intent to act outside the database (alias move, later webhooks), retried."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(TS)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TS)
    done_at: Mapped[datetime | None] = mapped_column(TS, nullable=True)


class Webhook(Base):
    """A subscription: POST signed JSON to ``url`` for the audit ``events`` named."""

    __tablename__ = "webhooks"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(TS)
    deleted_at: Mapped[datetime | None] = mapped_column(TS, nullable=True)


class WebhookSecret(Base):
    """A signing key of a webhook, encrypted (``registry_server.secret_box``); several are
    active during a rotation, until ``expires_at``."""

    __tablename__ = "webhook_secrets"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id"), index=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TS)
    expires_at: Mapped[datetime | None] = mapped_column(TS, nullable=True)


class WebhookDelivery(Base):
    """One event for one subscription (the webhook outbox); ``id`` is the idempotency key."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id"), index=True)
    event: Mapped[str] = mapped_column(String(60))
    audit_id: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(TS)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(TS)
    delivered_at: Mapped[datetime | None] = mapped_column(TS, nullable=True)


class Attestation(Base):
    """A signed decision: the DSSE envelope of one promotion's or rollback's in-toto
    Statement (``digest``: SHA-256 of its payload); ``attached_at`` once it is on the model
    version in MLflow."""

    __tablename__ = "attestations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    model: Mapped[str] = mapped_column(String(400))
    alias: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(20))
    digest: Mapped[str] = mapped_column(String(64))
    envelope: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TS)
    attached_at: Mapped[datetime | None] = mapped_column(TS, nullable=True, index=True)
    attach_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuditCheckpoint(Base):
    """A signed head of the audit chain: ``count`` events, the last ``head_id``/``head_hash``."""

    __tablename__ = "audit_checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    count: Mapped[int] = mapped_column(Integer)
    head_id: Mapped[int] = mapped_column(Integer)
    head_hash: Mapped[str] = mapped_column(String(64))
    envelope: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TS)
