"""Import the heavy tools only when a function needs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from mlops.errors import MissingDependency

_PACKAGES = {
    "mlflow": "mlflow>=3",
    "dvc": "dvc>=3",
    "great_expectations": "great-expectations>=1.7",
    "bentoml": "bentoml>=1.4",
    "sklearn": "scikit-learn",
    "pandas": "pandas",
    "httpx": "httpx",
    "securesystemslib": "securesystemslib>=1.0",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        package = _PACKAGES.get(top, top)
        raise MissingDependency(
            f"mlops needs the package {package!r} for this call, and importing {module!r} failed: "
            f"{exc}.",
            hint=f"Install it: pip install '{package}'.",
        ) from exc
