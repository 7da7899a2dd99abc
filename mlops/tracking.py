"""MLflow runs that name the exact data they used.

:func:`start_run` opens an MLflow run (the fluent one, so ``mlflow.log_metric`` and
``mlops.log_model`` inside the block land in it) and records every
:class:`~mlops.data.DatasetVersion` twice: as an MLflow dataset input (digest = the DVC
md5, source = ``path@rev`` plus the remote) and as ``mlops.dataset.<i>.*`` tags, next to
``mlops.git_commit``, ``mlops.git_dirty`` (uncommitted changes to tracked files) and, inside
``dvc exp run``, ``mlops.dvc.exp_name`` / ``mlops.dvc.exp_baseline``. :func:`log_model_class`
tags the class of the model trained in the run (``mlops.model.class``).

Nesting is refused: while a run is active in this context, :func:`start_run` raises
:class:`~mlops.errors.TrackingError`, and so does an MLflow run opened directly with
``mlflow.start_run``. Runs in other threads are independent (the active run lives in a
``ContextVar``; MLflow keeps one run stack per thread).

Example:
    >>> import mlops
    >>> ds = mlops.data.version("data/train.csv")                      # doctest: +SKIP
    >>> with mlops.start_run("baseline", datasets=[ds]) as run:       # doctest: +SKIP
    ...     mlflow.log_metric("accuracy", 0.93)
    >>> run.run_id                                                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import html
import os
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops import _git
from mlops.data import DatasetVersion
from mlops.errors import ConfigError, TrackingError

__all__ = ["Run", "active_run", "configure", "log_model_class", "start_run"]

TAG_PREFIX = "mlops.dataset"
TAG_COUNT = "mlops.dataset.count"
TAG_GIT_COMMIT = "mlops.git_commit"
TAG_GIT_DIRTY = "mlops.git_dirty"
TAG_MODEL_CLASS = "mlops.model.class"
#: run tag <- environment variable that ``dvc exp run`` sets for the stage commands
EXP_TAGS = {"mlops.dvc.exp_name": "DVC_EXP_NAME", "mlops.dvc.exp_baseline": "DVC_EXP_BASELINE_REV"}
_DATASET_FIELDS = ("path", "md5", "rev", "remote", "repo", "size", "nfiles")

_ACTIVE: ContextVar[Run | None] = ContextVar("mlops_active_run", default=None)
# URIs given explicitly to configure(), process-wide like MLflow's own; None means
# "read the settings on each call".
_EXPLICIT: dict[str, tuple[str, str] | None] = {"uris": None}


@dataclass(frozen=True)
class Run:
    """An MLflow run started by :func:`start_run`, with the datasets it recorded.

    Example:
        >>> run = Run(run_id="abc", experiment_id="1", tracking_uri="sqlite:///m.db")
        >>> run.to_dict()["run_id"]
        'abc'
    """

    run_id: str
    experiment_id: str
    tracking_uri: str
    datasets: tuple[DatasetVersion, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; datasets as :meth:`DatasetVersion.to_dict` dicts."""
        return {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "tracking_uri": self.tracking_uri,
            "datasets": [d.to_dict() for d in self.datasets],
        }

    def __str__(self) -> str:
        lines = [f"Run {self.run_id} (experiment {self.experiment_id}, {self.tracking_uri})"]
        lines += [f"  data: {d}" for d in self.datasets]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        items = "".join(f"<li><code>{html.escape(str(d))}</code></li>" for d in self.datasets)
        return (
            f"<div><b>Run</b> <code>{html.escape(self.run_id)}</code> "
            f"(experiment {html.escape(self.experiment_id)}, "
            f"<code>{html.escape(self.tracking_uri)}</code>)<ul>{items}</ul></div>"
        )


def configure(*, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
    """Point MLflow at the settings (or the given URIs) and make sure the experiment exists.

    Idempotent. Explicit URIs stick for later calls in this process; ``configure()``
    without arguments goes back to reading ``MLOPS_*`` settings on every call.

    Example:
        >>> configure()                                         # doctest: +SKIP
        >>> configure(tracking_uri="http://127.0.0.1:5000")     # doctest: +SKIP
    """
    if tracking_uri is None and registry_uri is None:
        _EXPLICIT["uris"] = None
    else:
        from mlops.config import load_settings

        settings = load_settings()
        tracking = tracking_uri or settings.resolved_tracking_uri()
        _EXPLICIT["uris"] = (tracking, registry_uri or tracking)
    _apply()


def _apply(experiment: str | None = None) -> str:
    """Set MLflow's URIs from the current configuration; return the experiment id."""
    from mlops.config import load_settings

    settings = load_settings()
    tracking = _apply_uris()
    return _experiment_id(experiment or settings.experiment, settings, tracking)


def _uris() -> tuple[str, str]:
    """The tracking and registry URIs in force: those given to :func:`configure`, else the
    settings'. Reading them imports no MLflow.

    Example:
        >>> tracking, registry = _uris()
    """
    explicit = _EXPLICIT["uris"]
    if explicit is None:
        from mlops.config import load_settings

        settings = load_settings()
        explicit = (settings.resolved_tracking_uri(), settings.resolved_registry_uri())
    return explicit


def _apply_uris() -> str:
    """Set MLflow's tracking and registry URIs from the configuration; return tracking."""
    from mlops._optional import require

    mlflow = require("mlflow")
    tracking, registry = _uris()
    for uri in (tracking, registry):
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)
    return tracking


def _experiment_id(name: str, settings: Any, tracking_uri: str) -> str:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        found = client.get_experiment_by_name(name)
        if found is not None and found.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment {name!r} at {tracking_uri!r} is deleted.",
                hint=f"Restore it (`mlflow experiments restore --experiment-id "
                f"{found.experiment_id}`) or pick another name with MLOPS_EXPERIMENT.",
            )
        if found is not None:
            return found.experiment_id
        location = None
        if not tracking_uri.startswith(("http://", "https://")):
            # A server decides where artifacts go; a local store keeps them under home.
            location = (settings.resolved_artifact_root() / name).as_uri()
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return client.get_experiment_by_name(name).experiment_id  # created concurrently
    except MlflowException as exc:
        raise TrackingError(
            f"MLflow at {tracking_uri!r} refused to read or create experiment {name!r}: "
            f"{exc.message}"
        ) from exc


def active_run() -> Run | None:
    """The run opened by :func:`start_run` in this context, or ``None``.

    Example:
        >>> active_run() is None
        True
    """
    return _ACTIVE.get()


@contextlib.contextmanager
def start_run(
    name: str | None = None,
    *,
    datasets: Iterable[DatasetVersion] = (),
    experiment: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[Run]:
    """Open an MLflow run that records its datasets and the code's git commit.

    The run ends ``FINISHED``, or ``FAILED`` if the block raises (the error propagates).

    Example:
        >>> with start_run("baseline", datasets=[ds], params={"C": 1.0}) as run:  # doctest: +SKIP
        ...     mlflow.log_metric("accuracy", 0.93)
    """
    datasets = tuple(datasets)
    for ds in datasets:
        if not isinstance(ds, DatasetVersion):
            raise ConfigError(
                f"start_run(datasets=...) takes DatasetVersion objects; got {ds!r}.",
                hint="Build them with mlops.data.version('path/to/data').",
            )
    current = _ACTIVE.get()
    if current is not None:
        raise TrackingError(
            f"Run {current.run_id} is already active; mlops runs do not nest.",
            hint="Finish the open `with mlops.start_run(...)` block before starting another.",
        )
    from mlops._optional import require

    mlflow = require("mlflow")
    from mlflow.exceptions import MlflowException

    experiment_id = _apply(experiment)
    all_tags = {**_lineage_tags(datasets), **dict(tags or {})}
    try:
        active = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=all_tags)
    except MlflowException as exc:
        raise TrackingError(f"MLflow could not start a run: {exc.message}") from exc
    run = Run(
        run_id=active.info.run_id,
        experiment_id=experiment_id,
        tracking_uri=mlflow.get_tracking_uri(),
        datasets=datasets,
    )
    token = _ACTIVE.set(run)
    status = "FAILED"
    try:
        try:
            _log_inputs(mlflow, datasets)
            if params:
                mlflow.log_params(dict(params))
        except MlflowException as exc:
            raise TrackingError(
                f"MLflow refused the datasets or params of run {run.run_id}: {exc.message}",
                hint="Check the params (names, values up to 6000 characters) and the store.",
            ) from exc
        yield run
        status = "FINISHED"
    finally:
        _ACTIVE.reset(token)
        mlflow.end_run(status=status)


# --- lineage recording ------------------------------------------------------------------
def _lineage_tags(datasets: tuple[DatasetVersion, ...]) -> dict[str, str]:
    tags: dict[str, str] = {TAG_COUNT: str(len(datasets))}
    for i, ds in enumerate(datasets):
        for key in _DATASET_FIELDS:
            value = getattr(ds, key)
            if value is not None:
                tags[f"{TAG_PREFIX}.{i}.{key}"] = str(value)
        if not ds.committed:  # only uncommitted records say so, as DatasetVersion.to_dict
            tags[f"{TAG_PREFIX}.{i}.committed"] = "False"
    where = datasets[0].repo if datasets else _code_root()
    commit = _git.head(where)
    if commit:
        tags[TAG_GIT_COMMIT] = commit
        dirty = _git.dirty(where)
        if dirty is not None:
            tags[TAG_GIT_DIRTY] = str(dirty).lower()
    for tag, env in EXP_TAGS.items():
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def log_model_class(model: Any) -> str:
    """Tag the active :func:`start_run` run with the class of ``model``; returns the name.

    MLflow's flavors record how to load a model, not what it is; reviewers compare
    ``mlops.model.class`` (e.g. ``sklearn.svm._classes.SVC``) between a candidate and the
    champion.

    Example:
        >>> with start_run(datasets=[ds]) as run:                   # doctest: +SKIP
        ...     log_model_class(model)
        'sklearn.linear_model._logistic.LogisticRegression'
    """
    run = _ACTIVE.get()
    if run is None:
        raise TrackingError(
            "log_model_class() needs an active run.",
            hint="Call it inside `with mlops.start_run(...):`.",
        )
    from mlops._optional import require

    cls = type(model)
    name = f"{cls.__module__}.{cls.__qualname__}"
    require("mlflow").MlflowClient().set_tag(run.run_id, TAG_MODEL_CLASS, name)
    return name


def _code_root() -> Path | None:
    from mlops.config import load_settings

    root = load_settings().dvc_root
    return Path(root) if root else None


def _datasets_from_tags(tags: Mapping[str, str]) -> tuple[DatasetVersion, ...]:
    """Rebuild the DatasetVersions that :func:`start_run` wrote as run tags.

    Example:
        >>> _datasets_from_tags({"mlops.dataset.count": "0"})
        ()
    """
    try:
        count = int(tags.get(TAG_COUNT, "0"))
    except ValueError:
        count = 0
    out = []
    for i in range(count):
        prefix = f"{TAG_PREFIX}.{i}."
        d = {k.removeprefix(prefix): v for k, v in tags.items() if k.startswith(prefix)}
        if {"path", "md5", "rev", "repo"} <= d.keys():
            out.append(DatasetVersion.from_dict(d))
    return tuple(out)


def _log_inputs(mlflow: Any, datasets: tuple[DatasetVersion, ...]) -> None:
    from mlflow.data.meta_dataset import MetaDataset

    source_cls = _dvc_source_class()
    for ds in datasets:
        meta = MetaDataset(source=source_cls(ds), name=ds.path, digest=ds.md5)
        mlflow.log_input(meta, context="training")


@functools.cache
def _dvc_source_class() -> type:
    """A MLflow ``DatasetSource`` for a DVC dataset version (built on first use)."""
    from mlflow.data.dataset_source import DatasetSource

    class DvcDatasetSource(DatasetSource):
        """``path@rev`` in a DVC repository, with the remote that stores it."""

        def __init__(self, ds: DatasetVersion) -> None:
            self.ds = ds

        @staticmethod
        def _get_source_type() -> str:
            return "dvc"

        def load(self, dst_path: str | None = None) -> str:
            from mlops.data import open as dvc_open

            target = Path(dst_path or ".") / Path(self.ds.path).name
            with dvc_open(self.ds, mode="rb") as src:
                target.write_bytes(src.read())
            return str(target)

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> DvcDatasetSource:
            raise NotImplementedError("DVC sources are built from a DatasetVersion")

        def to_dict(self) -> dict[str, Any]:
            return {"uri": self.ds.uri, **self.ds.to_dict()}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> DvcDatasetSource:
            return cls(DatasetVersion.from_dict(source_dict))

    return DvcDatasetSource
