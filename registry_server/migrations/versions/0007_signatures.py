"""Signed decisions and signed audit checkpoints.

``attestations`` keeps each promotion's and rollback's signed in-toto Statement (a DSSE
envelope) and whether it has been attached to the model version in MLflow yet;
``audit_checkpoints`` keeps the signed heads (count and hash) of the audit chain.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "attestations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, nullable=True),
        sa.Column("model", sa.String(400), nullable=False),
        sa.Column("alias", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("attached_at", TS, nullable=True),
        sa.Column("attach_error", sa.Text, nullable=True),
    )
    op.create_index("ix_attestations_request_id", "attestations", ["request_id"])
    op.create_index("ix_attestations_attached_at", "attestations", ["attached_at"])
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("head_id", sa.Integer, nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    op.drop_index("ix_attestations_attached_at", "attestations")
    op.drop_index("ix_attestations_request_id", "attestations")
    op.drop_table("attestations")
