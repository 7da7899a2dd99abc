"""Policy history: every policy the server ran under, and the digest on each decision.

``policies`` keeps each distinct policy (by digest) with its YAML text, when it was first
loaded and by whom (``startup``, ``reload`` or an admin). ``promotion_requests`` and
``approvals`` gain ``policy_digest``: the policy in force when the request was opened and
when each decision was taken (``NULL`` for rows written before this migration).

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("loaded_at", TS, nullable=False),
        sa.Column("loaded_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_policies_loaded_at", "policies", ["loaded_at"])
    for table in ("promotion_requests", "approvals"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("policy_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    for table in ("approvals", "promotion_requests"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("policy_digest")
    op.drop_index("ix_policies_loaded_at", table_name="policies")
    op.drop_table("policies")
