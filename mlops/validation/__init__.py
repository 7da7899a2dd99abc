"""Data validation with Great Expectations Core 1.x: suites as data, reports as values.

Example:
    >>> from mlops.validation import validate
    >>> report = validate("data/train.csv", "iris_train")  # doctest: +SKIP
    >>> report.success  # doctest: +SKIP
    True
"""

from mlops.validation._gx import SuiteError
from mlops.validation._report import ExpectationResult, ValidationReport, standalone_html
from mlops.validation._suite import Suite, SuiteNotFound, load_suite
from mlops.validation._validate import log_report, validate

__all__ = [
    "ExpectationResult",
    "Suite",
    "SuiteError",
    "SuiteNotFound",
    "ValidationReport",
    "load_suite",
    "log_report",
    "standalone_html",
    "validate",
]
