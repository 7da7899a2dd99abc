"""Which types a skops file may contain: those scikit-learn, NumPy and SciPy own.

MLflow 3 saves scikit-learn models with skops, which refuses to load any type outside
its own small allow-list (``sklearn.tree._tree.Tree`` included). The types of the three
packages a scikit-learn model is made of are trusted here; any other type must be named
by the caller, so a model that carries foreign code never loads silently.

Example:
    >>> from sklearn.linear_model import LogisticRegression
    >>> untrusted_types(LogisticRegression())
    ([], [])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mlops._optional import require
from mlops.errors import UntrustedModelType

__all__ = ["OWNED_PACKAGES", "dump", "skops_trusted_types", "untrusted_types"]

#: Top-level packages whose types are trusted in a logged scikit-learn model.
OWNED_PACKAGES = ("sklearn", "numpy", "scipy")


def _owned(type_name: str) -> bool:
    return type_name.split(".", 1)[0] in OWNED_PACKAGES


def dump(model: Any) -> bytes:
    """``model`` in the skops format, or :class:`UntrustedModelType` if skops cannot hold it.

    Example:
        >>> from sklearn.linear_model import Ridge
        >>> dump(Ridge())[:2]
        b'PK'
    """
    sio = require("skops.io")
    try:
        return sio.dumps(model)
    except Exception as exc:  # skops refuses what it cannot represent; say which model
        raise UntrustedModelType(
            f"{type(model).__name__} cannot be saved in the skops format: {exc}",
            hint="Log it with an MLflow flavor of its own library (mlflow.<flavor>.log_model).",
        ) from exc


def untrusted_types(model: Any, *, data: bytes | None = None) -> tuple[list[str], list[str]]:
    """Types in ``model`` that skops does not trust: ``(owned, foreign)``.

    ``owned`` belong to scikit-learn, NumPy or SciPy; ``foreign`` to anything else.
    ``data`` is the model's skops dump where the caller already has it (:func:`dump`).

    Example:
        >>> from sklearn.ensemble import RandomForestClassifier
        >>> from sklearn.datasets import load_iris
        >>> x, y = load_iris(return_X_y=True)
        >>> untrusted_types(RandomForestClassifier(n_estimators=2).fit(x, y))
        (['sklearn.tree._tree.Tree'], [])
    """
    data = dump(model) if data is None else data
    names = require("skops.io").get_untrusted_types(data=data)
    owned = sorted(n for n in names if _owned(n))
    foreign = sorted(n for n in names if not _owned(n))
    return owned, foreign


def skops_trusted_types(
    model: Any, trusted: Iterable[str] = (), *, data: bytes | None = None
) -> list[str]:
    """The ``skops_trusted_types`` to save ``model`` with, or :class:`UntrustedModelType`.

    Example:
        >>> from sklearn.linear_model import Ridge
        >>> skops_trusted_types(Ridge())
        []
    """
    owned, foreign = untrusted_types(model, data=data)
    extra = sorted(set(trusted))
    refused = [name for name in foreign if name not in extra]
    if refused:
        listed = ", ".join(repr(n) for n in refused)
        raise UntrustedModelType(
            f"{type(model).__name__} contains type(s) {listed} that are not owned by "
            f"scikit-learn, NumPy or SciPy, so a load of this model would refuse them.",
            hint=f"If you trust the code behind them, pass them to the call: "
            f"mlops.log_model(model, ..., trusted=[{listed}]).",
            types=refused,
        )
    return sorted(set(owned) | set(extra))
