"""Package a registered MLflow model version as a Bento, and prove it serves.

Example:
    >>> from mlops.packaging import package
    >>> report = package("churn", 3, sample=df.head(5))  # doctest: +SKIP
    >>> report.passed  # doctest: +SKIP
    True
"""

from mlops.packaging._approved import approved_bento
from mlops.packaging._bento_runtime import _tool_env as bentoml_env  # the project's Bento store
from mlops.packaging._bento_runtime import bento_digest, serve
from mlops.packaging._package import (
    DEV_TOOLS,
    bento_requirements,
    bento_version,
    build,
    discard,
    import_model,
    model_requirements,
    package,
    runtime_requirements,
    smoke_test,
)
from mlops.packaging._parity import PackageReport, Parity, SmokeResult, dependency_parity

__all__ = [
    "DEV_TOOLS",
    "PackageReport",
    "Parity",
    "SmokeResult",
    "approved_bento",
    "bento_digest",
    "bento_requirements",
    "bento_version",
    "bentoml_env",
    "build",
    "dependency_parity",
    "discard",
    "import_model",
    "model_requirements",
    "package",
    "runtime_requirements",
    "serve",
    "smoke_test",
]
