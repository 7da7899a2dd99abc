"""Bring the server database to the newest migration, then exit: step one of an upgrade.

Workers migrate at start too, under the same PostgreSQL advisory lock, so running this
while workers start (or twice at once) is safe: the second waits, then finds nothing to
do. Running it alone first, before a rolling restart, keeps the schema change out of the
workers' start-up and shows its result in one place.

Example:
    $ MLOPS_REGISTRY_DATABASE_URL=postgresql+psycopg://mlops@db/registry \\
        python -m registry_server.db.migrate
    registry database postgresql+psycopg://mlops@db/registry: 0004 -> 0005 (head)
"""

from __future__ import annotations

import sys

from sqlalchemy.engine import make_url

from registry_server.db.engine import Database

__all__ = ["main", "migrate"]


def migrate(database_url: str, *, secret_key: str | None = None) -> tuple[str | None, str | None]:
    """Upgrade ``database_url`` to head; return its revision before and after.

    ``secret_key`` (``MLOPS_REGISTRY_SECRET_KEY``) encrypts the webhook secrets a
    migration moves, as the workers would.

    Example:
        >>> migrate("sqlite:///:memory:")[0] is None
        True
    """
    db = Database(database_url)
    try:
        before = db.upgrade(secret_key=secret_key)
        return before, db.current_revision()
    finally:
        db.dispose()


def main() -> int:
    """Migrate the database of ``MLOPS_REGISTRY_DATABASE_URL``; print what changed."""
    from registry_server.settings import load_registry_settings

    settings = load_registry_settings()
    url = settings.database_url
    key = settings.secret_key.get_secret_value() if settings.secret_key else None
    before, after = migrate(url, secret_key=key)
    shown = make_url(url).render_as_string(hide_password=True)
    print(f"registry database {shown}: {before or 'empty'} -> {after} (head)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
