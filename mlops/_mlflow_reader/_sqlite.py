"""MLflow 3's tables in a SQLite file, read with :mod:`sqlite3` as MLflow reads them."""

from __future__ import annotations

import functools
import importlib.util
import re
import sqlite3
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mlops._mlflow_reader._reads import (
    _CONTEXT_TAG,
    _DELETED,
    _PROMPT_TAG,
    _WORKSPACE,
    Unanswered,
    _entity,
    _Reader,
)
from mlops.registry import ModelVersion, _DatasetInput

#: table -> the columns read here; a store without one of them is read by MLflow
_COLUMNS = {
    "registered_models": ("workspace", "name"),
    "registered_model_tags": ("workspace", "name", "key"),
    "registered_model_aliases": ("workspace", "name", "alias", "version"),
    "model_versions": (
        *("workspace", "name", "version", "current_stage"),
        *("source", "storage_location", "run_id"),
    ),
    "model_version_tags": ("workspace", "name", "version", "key", "value"),
    "runs": ("run_uuid", "artifact_uri"),
    "tags": ("run_uuid", "key", "value"),
    "inputs": ("input_uuid", "source_id", "destination_type", "destination_id"),
    "input_tags": ("input_uuid", "name", "value"),
    "datasets": ("dataset_uuid", "name", "dataset_source_type", "dataset_source"),
}


class _SqliteReader(_Reader):
    """MLflow 3's tables in a SQLite file, opened read-only."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @classmethod
    def open(cls, path: str) -> _SqliteReader | None:
        """The reader, or ``None`` when MLflow should open this store itself."""
        if not path or "?" in path or "%" in path or not Path(path).is_file():
            return None  # MLflow creates a missing store; URI options are its to read
        head = _mlflow_schema_head()
        if head is None:
            return None
        uri = f"file:{urllib.parse.quote(str(Path(path).absolute()))}?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=5.0)
        except sqlite3.Error:
            return None
        try:
            if _schema_ok(db, head):
                return cls(db)
        except sqlite3.Error:
            pass  # not a store MLflow wrote: MLflow says what is wrong with it
        db.close()
        return None

    def close(self) -> None:
        self.db.close()

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise Unanswered(f"SQLite: {exc}") from exc

    def _aliases(self, name: str) -> dict[str, int]:
        model = (_WORKSPACE, name)
        where = "WHERE workspace = ? AND name = ?"
        if not self._rows(f"SELECT 1 FROM registered_models {where}", *model):
            raise Unanswered(f"no registered model {name!r}")
        tag = f"SELECT 1 FROM registered_model_tags {where} AND key = ?"
        if self._rows(tag, *model, _PROMPT_TAG):
            raise Unanswered(f"{name!r} is a prompt")
        rows = self._rows(f"SELECT alias, version FROM registered_model_aliases {where}", *model)
        return {alias: int(version) for alias, version in rows}

    def _version(self, name: str, number: int, held: dict[str, int]) -> ModelVersion:
        key = (_WORKSPACE, name, number)
        found = self._rows(
            "SELECT name, version, source, storage_location, run_id FROM model_versions "
            "WHERE workspace = ? AND name = ? AND version = ? AND current_stage != ?",
            *key,
            _DELETED,
        )
        if len(found) != 1:
            raise Unanswered(f"no version {number} of {name!r}")
        row_name, version, source, location, run_id = found[0]
        tags = self._rows(
            "SELECT key, value FROM model_version_tags "
            "WHERE workspace = ? AND name = ? AND version = ?",
            *key,
        )
        if _PROMPT_TAG in dict(tags):
            raise Unanswered(f"{name!r} is a prompt")
        return _entity(row_name, version, run_id, source, location or source, held, dict(tags))

    def _run(self, run_id: str) -> tuple[str, dict[str, str]]:
        found = self._rows("SELECT artifact_uri FROM runs WHERE run_uuid = ?", run_id)
        if len(found) != 1:
            raise Unanswered(f"no run {run_id}")
        tags = dict(self._rows("SELECT key, value FROM tags WHERE run_uuid = ?", run_id))
        return found[0][0] or "", tags

    def _inputs(self, run_id: str) -> list[_DatasetInput]:
        # the query and the grouping of MLflow's store: one input per dataset, tags merged
        rows = self._rows(
            "SELECT d.dataset_uuid, d.name, d.dataset_source_type, d.dataset_source, "
            "t.name, t.value FROM inputs i "
            "JOIN datasets d ON i.source_id = d.dataset_uuid "
            "LEFT OUTER JOIN input_tags t ON t.input_uuid = i.input_uuid "
            "WHERE i.destination_type = 'RUN' AND i.destination_id IN (?) "
            "ORDER BY i.destination_id",
            run_id,
        )
        found: dict[str, tuple[str, str, str, dict[str, str]]] = {}
        for uuid, name, kind, source, key, value in rows:
            entry = found.setdefault(uuid, (name, kind, source, {}))
            if key is not None:
                entry[3][key] = value
        return [
            _DatasetInput(name, kind, source, tags.get(_CONTEXT_TAG))
            for name, kind, source, tags in found.values()
        ]


def _schema_ok(db: sqlite3.Connection, head: str) -> bool:
    if db.execute("SELECT version_num FROM alembic_version").fetchall() != [(head,)]:
        return False  # MLflow refuses a store not at its latest migration: let it say so
    for table, columns in _COLUMNS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if not set(columns) <= have:
            return False
    return True


@functools.cache
def _mlflow_schema_head() -> str | None:
    """The latest migration of the installed MLflow's stores, read from its migration files
    without importing it; ``None`` if MLflow is not installed or its files are unclear."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = next(iter(spec.submodule_search_locations))
    revisions: set[str] = set()
    parents: set[str] = set()
    for file in Path(package, "store", "db_migrations", "versions").glob("*.py"):
        text = file.read_text(encoding="utf-8")
        revisions.update(re.findall(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", text, re.M))
        for line in re.findall(r"^down_revision\s*=\s*(.+)$", text, re.M):
            parents.update(re.findall(r"['\"]([^'\"]+)['\"]", line))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None
