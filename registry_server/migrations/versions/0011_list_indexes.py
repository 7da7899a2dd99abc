"""Indexes for listing requests by state, newest first, at any depth.

``GET /v1/promotions?state=pending`` orders by id within one state: ``(state, id)`` lets
PostgreSQL and SQLite read the page straight from the index (backwards) instead of
collecting every request in that state and sorting them, which grows with the history
(100,000 requests: every promoted or rejected one).

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_promotion_state_id", "promotion_requests", ["state", "id"])


def downgrade() -> None:
    op.drop_index("ix_promotion_state_id", table_name="promotion_requests")
