"""An MLflow server's REST API 2.0 and its artifact proxy, read through httpx."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import posixpath
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from mlops._mlflow_reader._reads import (
    _CONTEXT_TAG,
    _PROMPT_TAG,
    Unanswered,
    _check_relative,
    _entity,
    _Reader,
)
from mlops.registry import ModelVersion, _DatasetInput

_T = TypeVar("_T")
_UNHANDLED_TLS_ENV = (
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)
_PROXY = "/api/2.0/mlflow-artifacts/artifacts"
_CHUNK = 1 << 20


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
