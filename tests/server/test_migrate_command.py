"""``python -m registry_server.db.migrate``: step one of an upgrade (deploy/compose.yaml runs
it before the workers start), on SQLite and PostgreSQL, twice at once on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from registry_server.db.engine import Database
from tests.conftest import fresh_pg_database

COMMAND = [sys.executable, "-m", "registry_server.db.migrate"]


def _start(url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MLOPS_REGISTRY_DATABASE_URL": url}
    return subprocess.Popen(
        COMMAND, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


def _revision(url: str) -> str | None:
    db = Database(url)
    try:
        return db.current_revision()
    finally:
        db.dispose()


def test_migrate_brings_an_empty_sqlite_database_to_head_then_does_nothing(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    head = Database.head_revision()
    assert _finish(_start(url)).strip().endswith(f": empty -> {head} (head)")
    assert _revision(url) == head
    assert _finish(_start(url)).strip().endswith(f": {head} -> {head} (head)")


@pytest.mark.postgres
def test_two_migrations_at_once_on_postgres_both_end_at_head_without_a_password_shown() -> None:
    head = Database.head_revision()
    with fresh_pg_database("mlops_migrate") as url:
        with_password = url.replace("postgres@", "postgres:s3cret@")  # trust auth ignores it
        outputs = sorted(_finish(p) for p in [_start(with_password), _start(with_password)])
        assert _revision(url) == head
    assert outputs[0].strip().endswith(f": {head} -> {head} (head)")  # waited for the lock
    assert outputs[1].strip().endswith(f": empty -> {head} (head)")
    assert all("s3cret" not in out and "***" in out for out in outputs)
