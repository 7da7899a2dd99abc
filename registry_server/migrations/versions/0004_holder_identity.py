"""Alias journal rows record who a holder is; aliases needing attention.

Adds the holder's identity (run id, evidence digest, MLflow's creation times of the
registered model and of the version) and an attention mark to ``alias_journal``. Rows
written before this migration get the evidence digest of the request that moved the alias
there; their run and MLflow times stay unknown (checked from the next move on).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("run_id", sa.String(64)),
    ("evidence_digest", sa.String(64)),
    ("model_created_ms", sa.BigInteger()),
    ("version_created_ms", sa.BigInteger()),
    ("attention", sa.String(40)),
    ("attention_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("alias_journal") as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.execute(
        "UPDATE alias_journal SET evidence_digest = ("
        "SELECT p.evidence_digest FROM promotion_requests p "
        "WHERE p.id = alias_journal.request_id) WHERE request_id IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("alias_journal") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
