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

import os

from mlops._mlflow_reader._reads import MlflowReads, Unanswered, _Reader
from mlops._mlflow_reader._rest import _RestReader
from mlops._mlflow_reader._sqlite import _SqliteReader
from mlops.tracking import _uris

__all__ = ["MlflowReads", "Unanswered", "open_reader"]

#: Settings this reader does not handle as MLflow's client does: with one set, MLflow reads.
_UNHANDLED_ENV = (
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_AWS_SIGV4",
    "MLFLOW_ENABLE_WORKSPACES",
    "MLFLOW_WORKSPACE",
)


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
