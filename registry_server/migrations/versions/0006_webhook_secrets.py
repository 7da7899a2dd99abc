"""Webhook secrets: several per subscription, encrypted at rest.

Each plaintext ``webhooks.secret`` becomes one encrypted row of ``webhook_secrets`` (its
UTF-8 bytes are the key, so receivers keep verifying) and the column is dropped. The key
comes from ``Database.upgrade(secret_key=...)``, else as the server finds it
(:func:`registry_server.secret_box.load_box`); it is needed only when there are secrets to
move. Downgrade writes the newest active secret of each webhook back as plaintext.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _box():  # type: ignore[no-untyped-def]
    from registry_server.secret_box import load_box

    bind = op.get_bind()
    url = bind.engine.url.render_as_string(hide_password=False)
    return load_box(url, context.config.attributes.get("secret_key"))


def upgrade() -> None:
    op.create_table(
        "webhook_secrets",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("webhook_id", sa.String(32), sa.ForeignKey("webhooks.id"), nullable=False),
        sa.Column("ciphertext", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
    )
    op.create_index("ix_webhook_secrets_webhook_id", "webhook_secrets", ["webhook_id"])
    bind = op.get_bind()
    hooks = sa.table(
        "webhooks", sa.column("id", sa.String), sa.column("secret"), sa.column("created_at", TS)
    )
    rows = bind.execute(sa.select(hooks.c.id, hooks.c.secret, hooks.c.created_at)).all()
    if rows:
        box = _box()
        table = sa.table(
            "webhook_secrets",
            sa.column("id", sa.String),
            sa.column("webhook_id", sa.String),
            sa.column("ciphertext", sa.Text),
            sa.column("created_at", TS),
        )
        op.bulk_insert(
            table,
            [
                {
                    "id": uuid.uuid4().hex,
                    "webhook_id": hook_id,
                    "ciphertext": box.seal(secret.encode("utf-8")),
                    "created_at": created_at,
                }
                for hook_id, secret, created_at in rows
            ],
        )
    # a plain ALTER (SQLite >= 3.35): a batch copy would drop the table the secrets and
    # deliveries point at, which SQLite's foreign keys refuse
    op.drop_column("webhooks", "secret")


def _plaintext(key: bytes) -> str:
    from registry_server.services.webhook_signing import display_secret

    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:  # a random key made by this version: its whsec_ form
        return display_secret(key)


def downgrade() -> None:
    column = sa.Column("secret", sa.String(200), nullable=False, server_default="")
    op.add_column("webhooks", column)
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT webhook_id, ciphertext FROM webhook_secrets "
            "WHERE expires_at IS NULL ORDER BY created_at"
        )
    ).all()
    if rows:
        box = _box()
        newest = {hook_id: ciphertext for hook_id, ciphertext in rows}
        for hook_id, ciphertext in newest.items():
            bind.execute(
                sa.text("UPDATE webhooks SET secret = :secret WHERE id = :id"),
                {"secret": _plaintext(box.open(ciphertext)), "id": hook_id},
            )
    if bind.dialect.name != "sqlite":  # SQLite keeps the '' default (no ALTER COLUMN)
        op.alter_column("webhooks", "secret", server_default=None)
    op.drop_index("ix_webhook_secrets_webhook_id", "webhook_secrets")
    op.drop_table("webhook_secrets")
