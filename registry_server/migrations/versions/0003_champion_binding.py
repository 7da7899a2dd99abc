"""Promotion requests bound to the champion their evidence was judged against.

Adds ``promotion_requests.champion`` (JSON ``{"version", "run_id"}``, version null when no
version held the target). Requests opened before this migration have no binding: for a
target whose verdict depends on the holder, their approvals and alias move end them
``stale`` (see :mod:`registry_server.services.champion`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("promotion_requests") as batch:
        batch.add_column(sa.Column("champion", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("promotion_requests") as batch:
        batch.drop_column("champion")
