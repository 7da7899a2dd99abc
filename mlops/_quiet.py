"""Quiet by default: no progress bars or INFO lines from the wrapped tools.

MLflow, BentoML, Great Expectations, DVC and Alembic each talk on their own (download bars,
``INFO mlflow.store.db.utils: Creating initial MLflow database tables``, ``Successfully
registered model``). mlops says what it does itself, so their chatter is off unless the
user asks for it with ``MLOPS_LOG_LEVEL=info`` (or ``debug``), or ``mlops --verbose``.
Everything here is set with ``setdefault``: a variable the user set wins.

Example:
    >>> import os
    >>> os.environ["MLOPS_LOG_LEVEL"] = "info"
    >>> configure()
    False
    >>> del os.environ["MLOPS_LOG_LEVEL"]
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator

__all__ = ["LOUD_LEVELS", "configure", "is_quiet", "silenced"]

LOUD_LEVELS = frozenset({"debug", "info"})
_TOOL_LOGGERS = ("mlflow", "alembic", "bentoml", "great_expectations", "dvc", "httpx")


def is_quiet() -> bool:
    """True unless ``MLOPS_LOG_LEVEL`` is ``info`` or ``debug``.

    Example:
        >>> isinstance(is_quiet(), bool)
        True
    """
    return os.environ.get("MLOPS_LOG_LEVEL", "warning").strip().lower() not in LOUD_LEVELS


def configure(*, verbose: bool = False, own_process: bool = True) -> bool:
    """Silence the wrapped tools (unless verbose); return whether they are silenced.

    ``own_process`` is for processes mlops owns (the CLI, the stage scripts, the server):
    there every tqdm bar is off too (``TQDM_DISABLE``). A notebook keeps its own bars; only
    MLflow's are switched off there.

    Example:
        >>> configure(verbose=True)
        False
    """
    if verbose:
        os.environ["MLOPS_LOG_LEVEL"] = "info"  # child processes (stages, bentoml) follow
    if not is_quiet():
        _undo()
        return False
    _default("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    _default("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # tqdm.auto warns on import in a Jupyter kernel without ipywidgets
    warnings.filterwarnings("ignore", message="IProgress not found")
    if own_process:
        _default("TQDM_DISABLE", "1")
    loaded = [n for n in _TOOL_LOGGERS if own_process or n in sys.modules]
    if loaded:  # a tool imported before mlops has configured its logger already
        import logging

        for name in loaded:
            logging.getLogger(name).setLevel(logging.WARNING)
    return True


_SET_HERE: set[str] = set()  # the variables configure() set, so verbose can take them back


def _default(name: str, value: str) -> None:
    if name not in os.environ:
        os.environ[name] = value
        _SET_HERE.add(name)


def _undo() -> None:
    """Take back what an earlier quiet configure() set (``mlops --verbose`` after import)."""
    for name in _SET_HERE:
        os.environ.pop(name, None)
    _SET_HERE.clear()
    if "logging" in sys.modules:
        import logging

        for name in _TOOL_LOGGERS:
            if logging.getLogger(name).level == logging.WARNING:
                logging.getLogger(name).setLevel(
                    logging.NOTSET if name != "mlflow" else logging.INFO
                )


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Swallow what a tool prints to stderr inside the block, while quiet.

    MLflow prints ``Successfully registered model 'x'.`` with ``print``, not a logger.

    Example:
        >>> import sys
        >>> with silenced():
        ...     print("not shown", file=sys.stderr)
    """
    if not is_quiet():
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield
