"""Back up and restore the registry server's database (SQLite or PostgreSQL).

SQLite uses the online backup API (``sqlite3.Connection.backup``): a consistent copy
while the server keeps running. PostgreSQL uses ``pg_dump --format=custom`` and
``pg_restore --clean --if-exists`` (the client tools must be on ``PATH``; a password in
the URL is passed through ``PGPASSWORD``, never on the command line). After a restore,
``GET /v1/audit/verify`` must answer ``ok``; :func:`restore` checks it before returning.

Example:
    >>> backup("sqlite:///registry.db", "registry.bak")        # doctest: +SKIP
    PosixPath('registry.bak')
    >>> restore("sqlite:///registry.db", "registry.bak")       # doctest: +SKIP
    {'ok': True, 'count': 42, 'first_bad_id': None, 'reason': None}

From a shell (database from ``MLOPS_REGISTRY_DATABASE_URL`` unless ``--database-url``)::

    python -m registry_server.backup backup /backups/registry-2026-11-26.bak
    python -m registry_server.backup restore /backups/registry-2026-11-26.bak
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from mlops.errors import ConfigError, MlopsError

__all__ = ["BackupError", "backup", "main", "restore"]


class BackupError(MlopsError, RuntimeError):
    """A backup or restore could not be made, or the restored audit chain is broken."""

    code = "backup_error"


def _sqlite_path(url: str) -> Path:
    path = url.split("///", 1)[-1]
    if not path or path == ":memory:":
        raise ConfigError(f"Cannot back up the in-memory SQLite database {url!r}.")
    return Path(path)


def _copy_sqlite(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(src) as source, sqlite3.connect(dest) as target:
        source.execute("PRAGMA busy_timeout=30000")
        source.backup(target)
    source.close()
    target.close()


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(args: list[str], env: dict[str, str]) -> None:
    tool = args[0]
    if shutil.which(tool) is None:
        raise BackupError(
            f"{tool} is not on PATH; PostgreSQL backups need the client tools.",
            hint="Install them, e.g. `apt-get install postgresql-client`.",
        )
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(
            f"{tool} failed with exit code {done.returncode}: {done.stderr.strip()[:2000]}",
            hint="Check the database URL, that the server is reachable and the dump file.",
        )


def backup(database_url: str, dest: str | Path) -> Path:
    """Write a consistent copy of the server database to ``dest``; return its path."""
    dest = Path(dest)
    if database_url.startswith("sqlite"):
        _copy_sqlite(_sqlite_path(database_url), dest)
    elif database_url.startswith("postgresql"):
        dsn, env = _libpq(database_url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _run(["pg_dump", "--format=custom", "--no-owner", f"--file={dest}", dsn], env)
    else:
        raise ConfigError(f"Cannot back up {database_url!r}: only sqlite and postgresql URLs.")
    return dest


def restore(database_url: str, src: str | Path) -> dict[str, Any]:
    """Replace the server database with the backup ``src``; the audit chain's verdict.

    Stop the server (all workers) first: a restore replaces every table.
    """
    src = Path(src)
    if not src.is_file():
        raise BackupError(f"No backup file at {src}.", hint="Pass the path `backup` wrote.")
    if database_url.startswith("sqlite"):
        _copy_sqlite(src, _sqlite_path(database_url))
    elif database_url.startswith("postgresql"):
        dsn, env = _libpq(database_url)
        args = ["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction"]
        _run([*args, f"--dbname={dsn}", str(src)], env)
    else:
        raise ConfigError(f"Cannot restore {database_url!r}: only sqlite and postgresql URLs.")
    return _verify(database_url)


def _verify(database_url: str) -> dict[str, Any]:
    from registry_server.db.engine import Database
    from registry_server.services.audit import verify

    db = Database(database_url)
    try:
        with db.read_sessions() as s:
            result = verify(s)
    finally:
        db.dispose()
    if not result["ok"]:
        raise BackupError(
            f"The restored audit chain is broken at event {result['first_bad_id']}: "
            f"{result['reason']}.",
            hint="Restore an older backup; this one was taken from a tampered database.",
        )
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m registry_server.backup backup|restore PATH [--database-url URL]``."""
    parser = argparse.ArgumentParser(prog="python -m registry_server.backup")
    parser.add_argument("action", choices=["backup", "restore"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--database-url", default=None, help="Default: the server settings.")
    args = parser.parse_args(argv)
    url = args.database_url
    if url is None:
        from registry_server.settings import load_registry_settings

        url = load_registry_settings().database_url
    if args.action == "backup":
        print(json.dumps({"backup": str(backup(url, args.path))}))
    else:
        print(json.dumps(restore(url, args.path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
