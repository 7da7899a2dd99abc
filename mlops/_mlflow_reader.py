"""The MLflow reads of ``mlops verify``, answered without importing MLflow where possible.

``import mlflow`` and opening its SQLAlchemy store take seconds; checking a signed decision
reads a few rows and files. :func:`open_reader` returns a reader that answers those reads
directly when the store is one it reads as MLflow does:

- a ``sqlite:///`` store: its tables read with :mod:`sqlite3`, opened read-only, when the
  schema is the one the installed MLflow expects (its latest migration, which MLflow
  itself insists on, and the columns read here); artifacts in local folders;
- an ``http(s)://`` MLflow server: its REST API 2.0 and its artifact proxy through httpx,
  sending the credentials MLflow would (``MLFLOW_TRACKING_TOKEN``, or a user name and
  password from ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` or
  ``~/.mlflow/credentials``).

For any other store (PostgreSQL, Databricks, a schema it does not know, client TLS,
auth or workspace settings it does not handle) it returns :class:`MlflowReads`, the same reads
through the MLflow client. A fast reader raises :class:`Unanswered` for anything it cannot
answer exactly as MLflow would (an artifact store such as ``s3://``, a missing row or file,
a server error): the caller then reads again through :class:`MlflowReads`, which gives the
same answer, or MLflow's own error.

Example:
    >>> with open_reader() as reads:                               # doctest: +SKIP
    ...     mv = reads.resolve("churn", "production")
    ...     digest = reads.model_digest(mv)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import posixpath
import re
import sqlite3
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from mlops import registry
from mlops.data import DatasetVersion
from mlops.errors import AliasNotFound
from mlops.evidence import Evidence, _download, _load_from
from mlops.evidence import load as load_evidence
from mlops.registry import ModelVersion, _DatasetInput, _datasets_from_inputs, _version_number
from mlops.signatures import file_digest, files_digest
from mlops.tracking import _datasets_from_tags, _uris

__all__ = ["MlflowReads", "Unanswered", "open_reader"]

_T = TypeVar("_T")

#: Settings this reader does not handle as MLflow's client does: with one set, MLflow reads.
_UNHANDLED_ENV = (
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_AWS_SIGV4",
    "MLFLOW_ENABLE_WORKSPACES",
    "MLFLOW_WORKSPACE",
)
_UNHANDLED_TLS_ENV = (
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)
_PROMPT_TAG = "mlflow.prompt.is_prompt"  # MLflow hides prompts from the model registry
_DELETED = "Deleted_Internal"  # the stage of a deleted model version
_WORKSPACE = "default"  # the only workspace without MLFLOW_ENABLE_WORKSPACES
_UPLOADING = ".artifact.uploading."  # MLflow lists no artifact named so (half-written)
_PROXY = "/api/2.0/mlflow-artifacts/artifacts"
_CONTEXT_TAG = "mlflow.data.context"
_CHUNK = 1 << 20
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


class Unanswered(Exception):
    """A fast reader cannot answer this read exactly as MLflow would: ask MLflow."""


def open_reader() -> MlflowReads | _Reader:
    """A fast reader for the configured store, else :class:`MlflowReads`.

    Both are context managers with the same reads: ``resolve(name, alias)``,
    ``artifact(run_id, path)``, ``model_digest(mv)``, ``evidence(mv, digest)`` and
    ``datasets(mv)``.

    Example:
        >>> with open_reader() as reads:                           # doctest: +SKIP
        ...     reads.resolve("churn", "production").version
        3
    """
    tracking, registry_uri = _uris()
    if tracking != registry_uri or any(os.environ.get(v) for v in _UNHANDLED_ENV):
        return MlflowReads()
    reader: _Reader | None = None
    if tracking.startswith("sqlite:///"):
        reader = _SqliteReader.open(tracking.removeprefix("sqlite:///"))
    elif tracking.startswith(("http://", "https://")):
        reader = _RestReader.open(tracking)
    return reader or MlflowReads()


class MlflowReads:
    """The reads through the library's MLflow functions: any store MLflow reads."""

    def __enter__(self) -> MlflowReads:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def resolve(self, name: str, alias: str) -> ModelVersion:
        return registry.resolve(f"{name}@{alias}")

    def artifact(self, run_id: str, path: str) -> bytes:
        return _download(run_id, path)

    def model_digest(self, mv: ModelVersion) -> str:
        return registry.model_digest(mv.name, mv.version)

    def evidence(self, mv: ModelVersion, digest: str) -> Evidence:
        return load_evidence(mv.name, mv.version, digest=digest)

    def datasets(self, mv: ModelVersion) -> tuple[DatasetVersion, ...]:
        return registry.lineage(mv.name, mv.version).datasets


class _Reader:
    """The reads, made of a few lookups that each store answers its own way."""

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError

    def _aliases(self, name: str) -> dict[str, int]:
        """Alias -> version of a registered model."""
        raise NotImplementedError

    def _version(self, name: str, number: int, held: dict[str, int]) -> ModelVersion:
        raise NotImplementedError

    def _run(self, run_id: str) -> tuple[str, dict[str, str]]:
        """The run's artifact URI and its tags."""
        raise NotImplementedError

    def _inputs(self, run_id: str) -> list[_DatasetInput]:
        raise NotImplementedError

    def _remote_file(self, uri: str, path: str) -> bytes:
        raise Unanswered(f"artifact URI {uri!r} is not a local folder")

    def _remote_digests(self, uri: str) -> dict[str, str]:
        raise Unanswered(f"artifact URI {uri!r} is not a local folder")

    # --- the reads, as mlops.registry and mlops.evidence make them ---------------------
    def resolve(self, name: str, alias: str) -> ModelVersion:
        held = self._aliases(name)
        number = held.get(alias)
        if number is None:
            raise AliasNotFound(f"Model {name!r} has no alias {alias!r}.")
        return self._version(name, _version_number(name, number), held)

    def artifact(self, run_id: str, path: str) -> bytes:
        _check_relative(path)
        uri, _ = self._run(run_id)
        local = _local_path(uri)
        if local is None:
            return self._remote_file(uri, path)
        file = Path(local, *path.split("/"))
        try:
            if file.is_file():
                return file.read_bytes()
        except OSError as exc:
            raise Unanswered(f"{file}: {exc}") from exc
        raise Unanswered(f"no artifact file {file}")

    def model_digest(self, mv: ModelVersion) -> str:
        uri = mv.download_uri or ""
        local = _local_path(uri)
        return files_digest(_local_digests(local) if local else self._remote_digests(uri))

    def evidence(self, mv: ModelVersion, digest: str) -> Evidence:
        return _load_from(mv.name, mv.version, mv.run_id, mv.tags, digest, self.artifact)

    def datasets(self, mv: ModelVersion) -> tuple[DatasetVersion, ...]:
        if mv.run_id is None:
            return ()
        _, tags = self._run(mv.run_id)
        return _datasets_from_tags(tags) or _datasets_from_inputs(
            mv.run_id, self._inputs(mv.run_id)
        )


# --- SQLite ---------------------------------------------------------------------------
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


# --- an MLflow server -------------------------------------------------------------------
def _shaped(read: Callable[..., _T]) -> Callable[..., _T]:
    """A REST read whose answer has another shape than MLflow's (a key missing, another
    type) is left to MLflow."""

    @functools.wraps(read)
    def checked(*args: Any) -> _T:
        try:
            return read(*args)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise Unanswered(f"{read.__name__}: an answer of another shape ({exc!r})") from exc

    return checked


class _RestReader(_Reader):
    """An MLflow server's REST API 2.0 and its artifact proxy."""

    def __init__(self, client: Any, tracking_uri: str) -> None:
        self.client = client
        self.tracking = urllib.parse.urlparse(tracking_uri.rstrip("/"))
        self.api = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow"
        self.runs: dict[str, dict[str, Any]] = {}

    @classmethod
    def open(cls, tracking_uri: str) -> _RestReader | None:
        """The reader, or ``None`` when MLflow should talk to this server itself."""
        parsed = urllib.parse.urlparse(tracking_uri)
        if parsed.username or parsed.password or parsed.query or parsed.params:
            return None
        https = parsed.scheme == "https"
        if https and any(os.environ.get(v) for v in _UNHANDLED_TLS_ENV):
            return None
        try:
            import httpx
        except ImportError:
            return None
        timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or 120)
        verify = _tls_context() if https else True
        client = httpx.Client(headers=_auth_headers(), timeout=timeout, verify=verify)
        return cls(client, tracking_uri)

    def close(self) -> None:
        self.client.close()

    def _json(self, url: str, **params: str) -> dict[str, Any]:
        import httpx

        try:
            res = self.client.get(url, params=params)
            body = res.json() if res.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            raise Unanswered(f"{url}: {exc}") from exc
        if not isinstance(body, dict):
            raise Unanswered(f"{res.url}: HTTP {res.status_code}")
        return body

    @contextlib.contextmanager
    def _stream(self, url: str) -> Iterator[Iterator[bytes]]:
        import httpx

        try:
            with self.client.stream("GET", url) as res:
                if res.status_code != 200:
                    raise Unanswered(f"{url}: HTTP {res.status_code}")
                yield res.iter_bytes(_CHUNK)
        except httpx.HTTPError as exc:
            raise Unanswered(f"{url}: {exc}") from exc

    @_shaped
    def _aliases(self, name: str) -> dict[str, int]:
        model = self._json(f"{self.api}/registered-models/get", name=name)["registered_model"]
        if _PROMPT_TAG in _tags(model):
            raise Unanswered(f"{name!r} is a prompt")
        return {a["alias"]: int(a["version"]) for a in model.get("aliases", [])}

    @_shaped
    def _version(self, name: str, number: int, held: dict[str, int]) -> ModelVersion:
        key = {"name": name, "version": str(number)}
        mv = self._json(f"{self.api}/model-versions/get", **key)["model_version"]
        tags = _tags(mv)
        if _PROMPT_TAG in tags or (not mv.get("run_id") and mv.get("model_id")):
            raise Unanswered(f"{name!r} version {number} is left to MLflow")
        where = self._json(f"{self.api}/model-versions/get-download-uri", **key)
        return _entity(
            mv["name"],
            mv["version"],
            mv.get("run_id", ""),
            mv.get("source", ""),
            where.get("artifact_uri", ""),
            held,
            tags,
        )

    def _get_run(self, run_id: str) -> dict[str, Any]:
        if run_id not in self.runs:
            self.runs[run_id] = self._json(f"{self.api}/runs/get", run_id=run_id)["run"]
        return self.runs[run_id]

    @_shaped
    def _run(self, run_id: str) -> tuple[str, dict[str, str]]:
        run = self._get_run(run_id)
        return run["info"].get("artifact_uri", ""), _tags(run.get("data", {}))

    @_shaped
    def _inputs(self, run_id: str) -> list[_DatasetInput]:
        items = self._get_run(run_id).get("inputs", {}).get("dataset_inputs", [])
        return [
            _DatasetInput(
                item["dataset"].get("name", ""),
                item["dataset"].get("source_type", ""),
                item["dataset"].get("source", ""),
                _tags(item).get(_CONTEXT_TAG),
            )
            for item in items
        ]

    def _remote_file(self, uri: str, path: str) -> bytes:
        proxy, root = self._proxy(uri)
        with self._stream(_url(proxy, root, path)) as chunks:
            return b"".join(chunks)

    @_shaped
    def _remote_digests(self, uri: str) -> dict[str, str]:
        """SHA-256 of each file under ``uri``, listed level by level and read through the
        server's artifact proxy, as MLflow's client downloads a folder."""
        proxy, root = self._proxy(uri)
        found: dict[str, str] = {}
        pending = [""]
        while pending:
            folder = pending.pop()
            where = posixpath.join(root, folder).rstrip("/")
            files = self._json(proxy, path=where).get("files", [])
            single = len(files) == 1 and not files[0].get("is_dir")
            if (not files and not folder) or (single and files[0]["path"] == _base(where)):
                raise Unanswered(f"{where!r} is not listed as a folder of files")
            for entry in files:
                rel = f"{folder}{entry['path']}"
                _check_relative(rel)
                if entry.get("is_dir"):
                    pending.append(f"{rel}/")
                    continue
                digest = hashlib.sha256()
                with self._stream(_url(proxy, root, rel)) as chunks:
                    for chunk in chunks:
                        digest.update(chunk)
                found[rel] = digest.hexdigest()
        return found

    def _proxy(self, uri: str) -> tuple[str, str]:
        """(the artifact proxy's URL, the path below it) for an ``mlflow-artifacts:`` URI,
        resolved against the tracking URI as MLflow's client resolves it."""
        parsed = urllib.parse.urlparse(uri)
        if parsed.scheme != "mlflow-artifacts" or parsed.path in ("", "/", _PROXY):
            raise Unanswered(f"artifact URI {uri!r} is not read through the server")
        path = re.sub("//+", "/", f"{self.tracking.path}{_PROXY}")
        netloc = parsed.netloc or self.tracking.netloc
        return f"{self.tracking.scheme}://{netloc}{path}", parsed.path.strip("/")


def _auth_headers() -> dict[str, str]:
    """The Authorization header MLflow's client sends, from the same settings."""
    import configparser

    username = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    config = configparser.ConfigParser()
    config.read(Path("~/.mlflow/credentials").expanduser())
    if "mlflow" in config:
        username = username or config["mlflow"].get("mlflow_tracking_username")
        password = password or config["mlflow"].get("mlflow_tracking_password")
    if username and password:
        import base64

        basic = base64.standard_b64encode(f"{username}:{password}".encode()).decode()
        return {"Authorization": f"Basic {basic}"}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _tls_context() -> Any:
    """The certificates MLflow's client (requests) trusts: ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE`` if set, else certifi's."""
    import ssl

    import certifi

    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle or certifi.where())


def _url(proxy: str, root: str, path: str) -> str:
    return f"{proxy}/{urllib.parse.quote(root)}/{urllib.parse.quote(path)}"


def _base(path: str) -> str:
    return posixpath.basename(path)


def _tags(entity: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in entity.get("tags", [])}


# --- shared -----------------------------------------------------------------------------
def _entity(
    name: str,
    version: Any,
    run_id: str | None,
    source: Any,
    download_uri: Any,
    held: dict[str, int],
    tags: dict[str, str],
) -> ModelVersion:
    """The version as ``mlops.registry.get`` builds it from MLflow's answers."""
    return ModelVersion(
        name=name,
        version=int(version),
        run_id=run_id or None,
        source=source,
        download_uri=download_uri,
        aliases=tuple(sorted(a for a, v in held.items() if str(v) == str(version))),
        tags=tags,
    )


def _local_path(uri: str) -> str | None:
    """The folder of a ``file:`` URI or an absolute path, as MLflow's local artifact store
    reads it; ``None`` for any other URI (and for escapes it leaves to MLflow)."""
    parsed = urllib.parse.urlparse(uri)
    if "%" in uri or not uri:
        return None
    if parsed.scheme == "file" and not parsed.netloc:
        path = urllib.request.url2pathname(parsed.path)
    elif not parsed.scheme:
        path = uri
    else:
        return None
    return path if os.path.isabs(path) else None


def _local_digests(root: str) -> dict[str, str]:
    """SHA-256 of each file under ``root`` as MLflow lists and copies them: level by level,
    half-uploaded files left out, links followed."""
    found: dict[str, str] = {}

    def walk(folder: str, prefix: str) -> bool:
        names = [n for n in os.listdir(folder) if not n.startswith(_UPLOADING)]
        for name in names:
            full = os.path.join(folder, name)
            if os.path.isdir(full):
                walk(full, f"{prefix}{name}/")
            elif os.path.isfile(full):
                found[f"{prefix}{name}"] = file_digest(full)
            else:
                raise Unanswered(f"{full} is neither a file nor a folder")
        return bool(names)

    try:
        if not os.path.isdir(root) or not walk(root, ""):
            raise Unanswered(f"no model files in {root}")
    except OSError as exc:
        raise Unanswered(f"{root}: {exc}") from exc
    return found


def _check_relative(path: str) -> None:
    """Leave to MLflow an artifact path it would refuse or resolve itself."""
    parts = path.split("/")
    if "\\" in path or "\0" in path or any(p in ("", ".", "..") for p in parts):
        raise Unanswered(f"artifact path {path!r} is left to MLflow")
