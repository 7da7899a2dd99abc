"""mlops: from versioned data to a production model through one gated flow.

``import mlops`` is cheap: the submodules and the tools they wrap (MLflow, DVC,
Great Expectations, BentoML) load on first use.

Example:
    >>> import mlops
    >>> ds = mlops.data.version("data/train.csv")                    # doctest: +SKIP
    >>> with mlops.start_run(datasets=[ds]) as run:                  # doctest: +SKIP
    ...     mlops.log_model(model, name="model", input_example=x.head(3))
    >>> mv = mlops.register(run, "churn")                            # doctest: +SKIP
    >>> handle = mlops.promote("churn", mv.version, to="production")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlops import _quiet
from mlops.errors import MlopsError

__version__ = "0.1.0"

# MLflow's progress bars and INFO lines stay off unless MLOPS_LOG_LEVEL=info (env only).
_quiet.configure(own_process=False)

_SUBMODULES = frozenset(
    {
        "attestation",
        "cli",
        "client",
        "config",
        "data",
        "errors",
        "evaluation",
        "evidence",
        "lineage",
        "models",
        "packaging",
        "policy",
        "promotion",
        "registry",
        "tracking",
        "validation",
    }
)

# public name -> (module, attribute)
_FUNCTIONS = {
    "load_settings": ("mlops.config", "load_settings"),
    "start_run": ("mlops.tracking", "start_run"),
    "active_run": ("mlops.tracking", "active_run"),
    "log_model": ("mlops.models", "log_model"),
    "register": ("mlops.registry", "register"),
    "validate": ("mlops.validation", "validate"),
    "evaluate": ("mlops.evaluation", "evaluate"),
    "package": ("mlops.packaging", "package"),
    "promote": ("mlops.promotion", "promote"),
    "verify": ("mlops.attestation", "verify"),
}

__all__ = ["MlopsError", "__version__", *sorted(_SUBMODULES), *sorted(_FUNCTIONS)]

if TYPE_CHECKING:  # pragma: no cover
    from mlops import (  # noqa: F401
        attestation,
        cli,
        client,
        config,
        data,
        errors,
        evaluation,
        evidence,
        lineage,
        models,
        packaging,
        policy,
        promotion,
        registry,
        tracking,
        validation,
    )
    from mlops.attestation import verify  # noqa: F401
    from mlops.config import load_settings  # noqa: F401
    from mlops.evaluation import evaluate  # noqa: F401
    from mlops.models import log_model  # noqa: F401
    from mlops.packaging import package  # noqa: F401
    from mlops.promotion import promote  # noqa: F401
    from mlops.registry import register  # noqa: F401
    from mlops.tracking import active_run, start_run  # noqa: F401
    from mlops.validation import validate  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"mlops.{name}")
    elif name in _FUNCTIONS:
        module_name, attr = _FUNCTIONS[name]
        module = getattr(importlib.import_module(module_name), attr)
    else:
        raise AttributeError(f"module 'mlops' has no attribute {name!r}")
    globals()[name] = module
    return module


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
