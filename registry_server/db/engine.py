"""Engines, sessions and migrations for SQLite and PostgreSQL.

On SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time,
so two approvals cannot both see "one short of quorum"); reads use a second engine with
plain deferred transactions and WAL so they never wait for a writer. On PostgreSQL the
service locks rows with ``SELECT ... FOR UPDATE``.

Example:
    >>> db = Database("sqlite:///:memory:")  # doctest: +SKIP
    >>> db.upgrade()                          # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["MIGRATIONS", "Database"]

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _sqlite_pragmas(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """The server's database: a write engine, a read engine and a session factory.

    On PostgreSQL ``pool_size`` connections are kept open (opened as needed): size it to
    the requests a worker serves at once, since each one beyond the pool connects anew
    (a new server process on PostgreSQL's side) and disconnects when it ends.
    """

    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.sqlite_path: str | None = None
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.sqlite_path = path
            self.engine = create_engine(url, connect_args={"check_same_thread": False})
            self.read_engine = create_engine(url, connect_args={"check_same_thread": False})
            _sqlite_pragmas(self.engine, immediate=True)
            _sqlite_pragmas(self.read_engine, immediate=False)
        else:
            import orjson

            # JSON columns are parsed by orjson (several per row of a page)
            self.engine = create_engine(
                url, pool_pre_ping=True, pool_size=pool_size, json_deserializer=orjson.loads
            )
            self.read_engine = self.engine
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        # Reads made of single statements (a page of requests, one request) run in
        # autocommit on PostgreSQL, on the same pool: no BEGIN and ROLLBACK round trips
        # around them. Each statement still reads one snapshot, all that READ COMMITTED
        # gives a transaction. A server-side cursor (``yield_per``) needs a transaction:
        # such reads use ``read_sessions``.
        self.statement_reads = (
            sessionmaker(
                self.engine.execution_options(isolation_level="AUTOCOMMIT"),
                expire_on_commit=False,
            )
            if not self.is_sqlite
            else self.read_sessions
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write session: commits on success, rolls back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def upgrade(self, *, secret_key: str | None = None) -> str | None:
        """Run the Alembic migrations up to head; return the revision found under the lock.

        ``secret_key`` (``MLOPS_REGISTRY_SECRET_KEY``) encrypts webhook secrets moved by a
        migration; without it the migration finds the key as the server does.
        """
        from alembic import command
        from alembic.runtime.migration import MigrationContext

        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # several workers may start at once
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727000)")
            before = MigrationContext.configure(conn).get_current_revision()
            cfg = _alembic_config(self.url)
            cfg.attributes["connection"] = conn
            cfg.attributes["secret_key"] = secret_key
            command.upgrade(cfg, "head")
        return before

    def current_revision(self) -> str | None:
        """The migration revision of the database (``None`` before the first migration)."""
        from alembic.runtime.migration import MigrationContext

        with self.read_engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @staticmethod
    @functools.cache
    def head_revision() -> str | None:
        """The newest migration revision shipped with the server."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(_alembic_config("")).get_current_head()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


def _alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg
