"""The reads ``mlops verify`` makes of MLflow, answered by MLflow or by a fast reader.

:class:`MlflowReads` goes through the library's MLflow functions; :class:`_Reader` is the
base of the fast readers (``_sqlite``, ``_rest``): the same reads built from a few lookups
each store answers its own way, and the local-folder artifact reads they share.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mlops import registry
from mlops.data import DatasetVersion
from mlops.errors import AliasNotFound
from mlops.evidence import Evidence, _download, _load_from
from mlops.evidence import load as load_evidence
from mlops.registry import ModelVersion, _DatasetInput, _datasets_from_inputs, _version_number
from mlops.signatures import file_digest, files_digest
from mlops.tracking import _datasets_from_tags

_PROMPT_TAG = "mlflow.prompt.is_prompt"  # MLflow hides prompts from the model registry
_DELETED = "Deleted_Internal"  # the stage of a deleted model version
_WORKSPACE = "default"  # the only workspace without MLFLOW_ENABLE_WORKSPACES
_UPLOADING = ".artifact.uploading."  # MLflow lists no artifact named so (half-written)
_CONTEXT_TAG = "mlflow.data.context"


class Unanswered(Exception):
    """A fast reader cannot answer this read exactly as MLflow would: ask MLflow."""


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
