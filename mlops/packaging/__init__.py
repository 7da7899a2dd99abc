"""Package a registered MLflow model version as a Bento, and prove it serves.

Example:
    >>> from mlops.packaging import package
    >>> report = package("churn", 3, sample=df.head(5))  # doctest: +SKIP
    >>> report.passed  # doctest: +SKIP
    True
"""

from mlops.packaging._bento_runtime import serve
from mlops.packaging._package import (
    bento_requirements,
    build,
    import_model,
    model_requirements,
    package,
    smoke_test,
)
from mlops.packaging._parity import PackageReport, Parity, SmokeResult, dependency_parity

__all__ = [
    "PackageReport",
    "Parity",
    "SmokeResult",
    "bento_requirements",
    "build",
    "dependency_parity",
    "import_model",
    "model_requirements",
    "package",
    "serve",
    "smoke_test",
]
