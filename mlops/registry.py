"""The MLflow model registry: versions, aliases (never stages) and lineage.

Example:
    >>> import mlops
    >>> mv = mlops.register(run, "churn")                            # doctest: +SKIP
    >>> mlops.registry.set_alias("churn", "candidate", mv.version)   # doctest: +SKIP
    >>> mlops.registry.resolve("churn@candidate").version            # doctest: +SKIP
    >>> mlops.registry.lineage("churn", mv.version).datasets[0].md5  # doctest: +SKIP

Protected aliases (``production``, ...) are moved by the registry server only; this
module is the plain MLflow layer it and everyone else use.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from mlops._quiet import silenced
from mlops.data import DatasetVersion
from mlops.errors import (
    AliasNotFound,
    ConfigError,
    ModelNotReady,
    ModelVersionNotFound,
    RegistryError,
)
from mlops.tracking import TAG_GIT_COMMIT, Run, _apply_uris, _datasets_from_tags

__all__ = [
    "Lineage",
    "ModelVersion",
    "aliases",
    "delete_alias",
    "get",
    "get_alias",
    "lineage",
    "load_model",
    "model_digest",
    "register",
    "resolve",
    "set_alias",
    "set_tag",
    "versions",
]

_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version.

    ``source`` is what MLflow stores (a ``models:/m-...`` URI in MLflow 3);
    ``download_uri`` is where the files are.

    Example:
        >>> mv = ModelVersion("churn", 3, "abc", "models:/m-1", "file:///a", ("champion",), {})
        >>> mv.uri, mv.to_dict()["aliases"]
        ('models:/churn/3', ['champion'])
    """

    name: str
    version: int
    run_id: str | None
    source: str
    download_uri: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def uri(self) -> str:
        """``models:/<name>/<version>``, loadable by MLflow."""
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields."""
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "source": self.source,
            "download_uri": self.download_uri,
            "aliases": list(self.aliases),
            "tags": dict(self.tags),
        }

    def __str__(self) -> str:
        al = f" @{', @'.join(self.aliases)}" if self.aliases else ""
        return f"{self.name} v{self.version}{al} (run {self.run_id})"

    def _repr_html_(self) -> str:
        al = ", ".join(f"<code>@{html.escape(a)}</code>" for a in self.aliases) or "none"
        return (
            f"<div><b>{html.escape(self.name)}</b> version {self.version}; aliases: {al}; "
            f"run <code>{html.escape(str(self.run_id))}</code>; "
            f"files <code>{html.escape(self.download_uri)}</code></div>"
        )


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from: its run, the code commit and the data.

    Example:
        >>> lin = lineage("churn", 3)                             # doctest: +SKIP
        >>> [d.uri for d in lin.datasets]                         # doctest: +SKIP
        ['data/train.csv@3f1c...']
    """

    model_version: ModelVersion
    run_id: str | None
    git_commit: str | None
    datasets: tuple[DatasetVersion, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; ``datasets`` as DatasetVersion dicts."""
        return {
            "model_version": self.model_version.to_dict(),
            "run_id": self.run_id,
            "git_commit": self.git_commit,
            "datasets": [d.to_dict() for d in self.datasets],
        }

    def __str__(self) -> str:
        mv = self.model_version
        lines = [f"{mv.name} v{mv.version}: run {self.run_id}, git commit {self.git_commit}"]
        lines += [f"  data: {d}" for d in self.datasets]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(d.path)}</code></td><td><code>{d.md5}</code></td>"
            f"<td><code>{d.rev[:12]}</code></td><td>{html.escape(str(d.remote))}</td></tr>"
            for d in self.datasets
        )
        mv = self.model_version
        return (
            f"<div><b>{html.escape(mv.name)}</b> v{mv.version}: run "
            f"<code>{html.escape(str(self.run_id))}</code>, commit "
            f"<code>{html.escape(str(self.git_commit))}</code>"
            f"<table><tr><th>path</th><th>md5</th><th>rev</th><th>remote</th></tr>{rows}"
            "</table></div>"
        )


# --- registering --------------------------------------------------------------------
def register(
    run_or_model_uri: Run | str,
    name: str,
    *,
    artifact_path: str = "model",
    tags: Mapping[str, str] | None = None,
    timeout: float = 300.0,
) -> ModelVersion:
    """Register a logged model as a new version of ``name`` and wait until it is READY.

    Accepts a :class:`~mlops.tracking.Run`, a run id (the model logged under
    ``artifact_path`` in it), or a model URI (``models:/m-...``, ``runs:/<id>/model``).
    A logged model that is not READY (its logging failed) is refused with
    :class:`~mlops.errors.ModelNotReady`, naming the run and its state.

    Example:
        >>> info = mlops.log_model(clf, name="model")             # doctest: +SKIP
        >>> mv = register(run, "churn")                           # doctest: +SKIP
        >>> mv = register(info.model_uri, "churn")                # doctest: +SKIP
    """
    mlflow = _mlflow()
    model_uri = _model_uri(run_or_model_uri, artifact_path)
    _ensure_ready(model_uri)
    with _errors(f"registering {model_uri!r} as {name!r}"), silenced():
        created = mlflow.register_model(
            model_uri, name, await_registration_for=int(timeout), tags=dict(tags or {})
        )
    _wait_ready(name, int(created.version), timeout)
    return get(name, int(created.version))


def _model_uri(run_or_model_uri: Run | str, artifact_path: str) -> str:
    if isinstance(run_or_model_uri, Run):
        return _logged_model_uri(run_or_model_uri.run_id, artifact_path)
    ref = str(run_or_model_uri)
    if ref.startswith(("models:/", "runs:/")):
        return ref
    if _RUN_ID.match(ref):
        return _logged_model_uri(ref, artifact_path)
    raise ConfigError(
        f"register() takes a Run, a run id or a model URI; got {ref!r}.",
        hint="Pass the Run from mlops.start_run, or log_model(...).model_uri.",
    )


def _ensure_ready(model_uri: str) -> None:
    """Refuse a logged model (``models:/m-...``) whose logging did not finish READY."""
    if not model_uri.startswith("models:/m-"):
        return
    model_id = model_uri.removeprefix("models:/")
    with _errors(f"reading logged model {model_id!r}", not_found=ModelVersionNotFound):
        logged = _client().get_logged_model(model_id)
    status = str(logged.status)
    if status == "READY":
        return
    run_id = logged.source_run_id
    run_state = "?"
    if run_id:
        with _errors(f"reading run {run_id!r}"):
            run_state = _client().get_run(run_id).info.status
    raise ModelNotReady(
        f"Logged model {logged.name!r} ({model_id}) of run {run_id} is {status}, not READY "
        f"(the run is {run_state}); it has no files to register.",
        run_id=run_id,
        status=status,
        run_status=run_state,
    )


def _logged_model_uri(run_id: str, artifact_path: str) -> str:
    client = _client()
    with _errors(f"reading run {run_id!r}", not_found=ModelVersionNotFound):
        run = client.get_run(run_id)
        found = client.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run_id}' AND name = '{artifact_path}'",
            order_by=[{"field_name": "creation_time", "ascending": False}],
        )
    if not found:
        raise ModelVersionNotFound(
            f"Run {run_id} logged no model named {artifact_path!r}.",
            hint="Log one inside the run (mlflow.<flavor>.log_model(model, name=...)) or "
            "pass artifact_path= the name you used.",
        )
    return f"models:/{found[0].model_id}"


def _wait_ready(name: str, version: int, timeout: float) -> None:
    client = _client()
    deadline = time.monotonic() + timeout
    while True:
        with _errors(f"reading {name!r} version {version}"):
            mv = client.get_model_version(name, str(version))
        if mv.status == "READY":
            return
        if mv.status == "FAILED_REGISTRATION":
            raise RegistryError(
                f"MLflow failed to register {name!r} version {version}: {mv.status_message}"
            )
        if time.monotonic() > deadline:
            raise RegistryError(
                f"{name!r} version {version} is still {mv.status} after {timeout:.0f}s.",
                hint="Check the MLflow server logs; retry with a larger timeout=.",
            )
        time.sleep(0.5)


# --- reading ----------------------------------------------------------------------------
def get(name: str, version: int | str) -> ModelVersion:
    """One registered version; :class:`~mlops.errors.ModelVersionNotFound` if absent.

    Example:
        >>> get("churn", 3).download_uri                          # doctest: +SKIP
    """
    number = _version_number(name, version)
    client = _client()
    with _errors(f"reading {name!r} version {number}", not_found=ModelVersionNotFound):
        mv = client.get_model_version(name, str(number))
        by_alias = client.get_registered_model(name).aliases
        download_uri = client.get_model_version_download_uri(name, str(number))
        return _entity(mv, by_alias, download_uri)


def versions(name: str) -> list[ModelVersion]:
    """All versions of a registered model, newest first.

    Example:
        >>> [mv.version for mv in versions("churn")]              # doctest: +SKIP
        [3, 2, 1]
    """
    client = _client()
    with _errors(f"listing versions of {name!r}", not_found=ModelVersionNotFound):
        by_alias = client.get_registered_model(name).aliases
        found = client.search_model_versions(f"name = '{name}'")
        return [
            _entity(mv, by_alias, client.get_model_version_download_uri(name, mv.version))
            for mv in sorted(found, key=lambda m: -int(m.version))
        ]


def resolve(ref: str) -> ModelVersion:
    """A version from ``name@alias``, ``name/version`` or ``models:/...`` of either.

    Example:
        >>> resolve("churn@production").version                  # doctest: +SKIP
        >>> resolve("models:/churn/3").version                    # doctest: +SKIP
    """
    body = ref.removeprefix("models:/")
    if "@" in body:
        name, alias = body.rsplit("@", 1)
        found = get_alias(name, alias)
        if found is None:
            raise AliasNotFound(f"Model {name!r} has no alias {alias!r}.")
        return found
    name, sep, version = body.rpartition("/")
    if not sep or not name or not version.isdigit():
        raise ConfigError(
            f"Cannot read a model version from {ref!r}.",
            hint="Write 'name@alias', 'name/<version number>' or 'models:/name/<version>'.",
        )
    return get(name, int(version))


def aliases(name: str) -> dict[str, int]:
    """Alias -> version number for one registered model.

    Example:
        >>> aliases("churn")                                      # doctest: +SKIP
        {'production': 2, 'candidate': 3}
    """
    client = _client()
    with _errors(f"reading model {name!r}", not_found=ModelVersionNotFound):
        found = client.get_registered_model(name).aliases
    return {alias: int(v) for alias, v in sorted(found.items())}


def get_alias(name: str, alias: str) -> ModelVersion | None:
    """The version holding ``alias``, or ``None`` if no version does.

    Example:
        >>> get_alias("churn", "production")                      # doctest: +SKIP
    """
    number = aliases(name).get(alias)
    return None if number is None else get(name, number)


def lineage(name: str, version: int | str) -> Lineage:
    """The run, the code commit and the DVC dataset versions behind a model version.

    Example:
        >>> lin = lineage("churn", 3)                              # doctest: +SKIP
        >>> lin.datasets[0].md5, lin.datasets[0].rev               # doctest: +SKIP
    """
    mv = get(name, version)
    if mv.run_id is None:
        return Lineage(model_version=mv, run_id=None, git_commit=None)
    with _errors(f"reading run {mv.run_id!r}"):
        run = _client().get_run(mv.run_id)
    tags = run.data.tags
    return Lineage(
        model_version=mv,
        run_id=mv.run_id,
        git_commit=tags.get(TAG_GIT_COMMIT),
        datasets=_datasets_from_tags(tags) or _datasets_from_inputs(run.info.run_id, _inputs(run)),
    )


class _DatasetInput(NamedTuple):
    """One dataset input of a run, as MLflow records it (``context`` from its tags)."""

    name: str
    source_type: str
    source: str
    context: str | None


def _inputs(run: Any) -> list[_DatasetInput]:
    """The dataset inputs of an MLflow ``Run`` entity."""
    inputs = run.inputs.dataset_inputs if run.inputs else []
    return [
        _DatasetInput(
            name=item.dataset.name,
            source_type=item.dataset.source_type,
            source=item.dataset.source,
            context={t.key: t.value for t in item.tags or ()}.get("mlflow.data.context"),
        )
        for item in inputs
    ]


def _datasets_from_inputs(
    run_id: str, inputs: Iterable[_DatasetInput]
) -> tuple[DatasetVersion, ...]:
    """Fallback when the ``mlops.dataset.*`` tags are gone: the run's DVC dataset inputs.

    Example:
        >>> _datasets_from_inputs("abc", [_DatasetInput("x", "local", "/x", None)])
        ()
    """
    found = []
    for item in inputs:
        if item.source_type != "dvc" or item.context == "evaluation":
            continue  # mlops.evaluate logs its data too; lineage is the training data
        try:
            found.append(DatasetVersion.from_dict(json.loads(item.source)))
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(
                f"Run {run_id} has a DVC dataset input {item.name!r} whose "
                f"source cannot be read: {exc}",
                hint="Re-run training with mlops.start_run(datasets=[...]).",
            ) from exc
    return tuple(found)


def model_digest(name: str, version: int | str) -> str:
    """SHA-256 tree digest of the version's model files as MLflow stores them.

    The registry server signs this digest as the subject of a promotion; ``mlops verify``
    recomputes it. Any file of the model changed, added or removed gives another digest.

    Example:
        >>> model_digest("churn", 3)[:8]                          # doctest: +SKIP
        '9f86d081'
    """
    import tempfile

    from mlops.signatures import tree_digest

    mv = get(name, version)
    mlflow = _mlflow()
    with tempfile.TemporaryDirectory() as tmp, _errors(f"downloading the files of {mv.uri}"):
        local = mlflow.artifacts.download_artifacts(artifact_uri=mv.download_uri, dst_path=tmp)
        return tree_digest(local)


def load_model(name: str, version: int | str) -> Any:
    """The version as an MLflow pyfunc model (``.predict(df)``).

    Example:
        >>> load_model("churn", 3).predict(df)                     # doctest: +SKIP
    """
    mlflow = _mlflow()
    number = _version_number(name, version)
    get(name, number)  # a clear ModelVersionNotFound before MLflow's own message
    with _errors(f"loading {name!r} version {number}"):
        return mlflow.pyfunc.load_model(f"models:/{name}/{number}")


# --- writing ----------------------------------------------------------------------------
def set_alias(name: str, alias: str, version: int | str) -> ModelVersion:
    """Point ``alias`` at ``version`` (moving it if another version held it).

    Example:
        >>> set_alias("churn", "candidate", 3)                     # doctest: +SKIP
    """
    number = _version_number(name, version)
    get(name, number)
    with _errors(f"setting alias {alias!r} of {name!r} to version {number}"):
        _client().set_registered_model_alias(name, alias, str(number))
    return get(name, number)


def delete_alias(name: str, alias: str) -> bool:
    """Remove ``alias``; ``True`` if it existed, ``False`` if no version held it.

    Example:
        >>> delete_alias("churn", "candidate")                     # doctest: +SKIP
        True
    """
    if alias not in aliases(name):
        return False
    with _errors(f"deleting alias {alias!r} of {name!r}"):
        _client().delete_registered_model_alias(name, alias)
    return True


def set_tag(name: str, version: int | str, key: str, value: str) -> None:
    """Set a tag on a model version.

    Example:
        >>> set_tag("churn", 3, "mlops.evidence.digest", "ab12...")  # doctest: +SKIP
    """
    number = _version_number(name, version)
    with _errors(f"tagging {name!r} version {number}", not_found=ModelVersionNotFound):
        _client().set_model_version_tag(name, str(number), key, str(value))


# --- helpers ----------------------------------------------------------------------------
def _mlflow() -> Any:
    from mlops._optional import require

    mlflow = require("mlflow")
    _apply_uris()
    return mlflow


def _client() -> Any:
    """An ``MlflowClient`` on the configured tracking and registry URIs."""
    _mlflow()
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def _mlflow_version(client: Any, name: str, version: int) -> Any:
    """MLflow's own ModelVersion entity, or ModelVersionNotFound / RegistryError."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelVersionNotFound(
                f"Model {name!r} has no version {version} in the MLflow registry.",
                hint="Register it first with `mlops.register(run, name)`, or check the version.",
            ) from exc
        raise RegistryError(f"Could not read model {name!r} version {version}: {exc}") from exc


def _version_number(name: str, version: int | str) -> int:
    try:
        number = int(version)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ModelVersionNotFound(
            f"Model {name!r} has no version {version!r}: versions are integers from 1."
        )
    return number


def _entity(mv: Any, by_alias: Mapping[str, Any], download_uri: str) -> ModelVersion:
    held = tuple(sorted(a for a, v in by_alias.items() if str(v) == str(mv.version)))
    run_id = mv.run_id
    if not run_id and getattr(mv, "model_id", None):
        run_id = _client().get_logged_model(mv.model_id).source_run_id
    return ModelVersion(
        name=mv.name,
        version=int(mv.version),
        run_id=run_id or None,
        source=mv.source,
        download_uri=download_uri,
        aliases=held,
        tags=dict(mv.tags or {}),
    )


class _errors:
    """Turn MlflowException into our errors, naming what we were doing."""

    def __init__(self, doing: str, *, not_found: type[Exception] | None = None) -> None:
        self.doing = doing
        self.not_found = not_found

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        from mlflow.exceptions import MlflowException

        if not isinstance(exc, MlflowException):
            return False
        if self.not_found is not None and exc.error_code in _NOT_FOUND:
            raise self.not_found(f"Not found while {self.doing}: {exc.message}") from exc
        if exc.error_code == "INVALID_PARAMETER_VALUE":
            raise ConfigError(f"MLflow refused {self.doing}: {exc.message}") from exc
        raise RegistryError(f"MLflow failed while {self.doing}: {exc.message}") from exc
