"""Normalised user identities: ``users.identity``, unique.

Every user row gets the identity its name denotes (:func:`mlops.identity.normalise_identity`:
NFKC, invisible characters dropped, whitespace trimmed, case folded), and a unique index
keeps two spellings of one person (``Ci-Bot``, ``ci-bot ``) from ever being two users again.

Existing rows made by older versions may already collide (``ci-bot`` and ``Ci-Bot`` both
exist). The migration then decides for safety, not convenience:

- the user created first (then the smaller name) keeps the identity;
- every later colliding user keeps its row (audit events, requests and approvals still name
  it) but gets no identity (``NULL``), and all its live tokens are **revoked**, because a
  second spelling of a person is exactly what let someone approve their own request;
- the server compares people by normalised name everywhere (requester rule, distinct
  approvers), so old approvals by a colliding spelling count as the first user's.

An admin re-issues tokens for such a person under a distinct name (``POST /v1/tokens`` or
``mlops token create``); ``GET /v1/tokens`` lists the revoked ones. Names that would be
refused today (whitespace, letters of other scripts) but collide with nobody are kept.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from mlops.identity import normalise_identity

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_log = logging.getLogger("alembic.runtime.migration")

users = sa.table(
    "users",
    sa.column("name", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("identity", sa.String),
)
tokens = sa.table(
    "tokens",
    sa.column("user", sa.String),
    sa.column("revoked_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.add_column("users", sa.Column("identity", sa.String(200), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.select(users.c.name, users.c.created_at)).all()
    owners: dict[str, str] = {}
    now = datetime.now(UTC)
    for name, _created in sorted(rows, key=lambda r: (r.created_at, r.name)):
        identity = normalise_identity(name)
        owner = owners.setdefault(identity, name)
        if owner == name:
            conn.execute(users.update().where(users.c.name == name).values(identity=identity))
            continue
        conn.execute(
            tokens.update()
            .where(tokens.c.user == name, tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        _log.warning(
            "User %r collides with %r (identity %r): its tokens are revoked.", name, owner, identity
        )
    op.create_index("ix_users_identity", "users", ["identity"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_users_identity", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("identity")
