"""Data validation with Great Expectations Core 1.x.

Suites are plain data, written in code or in YAML (``suites/<name>.yaml``); each
expectation is ``{"type": "expect_...", "kwargs": {...}}`` and maps to the GX 1.x class of
that name (``gx.expectations.ExpectColumnValuesToNotBeNull``). :func:`validate` runs a
suite on a pandas DataFrame or on a DVC :class:`~mlops.data.DatasetVersion` and returns a
:class:`ValidationReport`; inside an MLflow run it also logs the report (JSON), GX Data
Docs (HTML) and the metric ``validation.<suite>.success_percent``.

Example:
    >>> import pandas as pd
    >>> from mlops.validation import Suite, validate
    >>> suite = Suite("people", [
    ...     {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}},
    ...     {"type": "expect_column_values_to_be_between",
    ...      "kwargs": {"column": "age", "min_value": 0, "max_value": 130}},
    ... ])
    >>> report = validate(pd.DataFrame({"age": [31, 47]}), suite, log=False)
    >>> report.success, report.statistics["success_percent"]
    (True, 100.0)
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from mlops._optional import require
from mlops.errors import DataError, DataValidationFailed, TrackingError
from mlops.validation._report import (
    ValidationReport,
    _build_report,
    _dataset_text,
    standalone_html,
)
from mlops.validation._suite import Suite, load_suite

if TYPE_CHECKING:
    import pandas as pd

    from mlops.data import DatasetVersion

__all__ = ["log_report", "validate"]

_ARTIFACT_DIR = "mlops/validation"
_logger = logging.getLogger(__name__)


# --- validate ---------------------------------------------------------------------------
def validate(
    data: pd.DataFrame | DatasetVersion | str | os.PathLike[str],
    suite: Suite | str | os.PathLike[str],
    *,
    raise_on_failure: bool = False,
    log: bool = True,
    run_id: str | None = None,
) -> ValidationReport:
    """Run an expectation suite on a DataFrame or a DVC dataset version.

    A failing suite is data in the report; :class:`~mlops.errors.DataValidationFailed`
    (carrying ``.report``) is raised only with ``raise_on_failure=True``. With ``log=True``
    and an active MLflow run, the report is logged as ``mlops/validation/<suite>.json``,
    GX Data Docs as ``mlops/validation/<suite>.html`` and the metric
    ``validation.<suite>.success_percent``. ``run_id`` logs them to that run instead
    (e.g. a candidate model's run, also when the suite fails).

    Example:
        >>> ds = mlops.data.version("data/train.csv")              # doctest: +SKIP
        >>> validate(ds, "iris_train", raise_on_failure=True)      # doctest: +SKIP
    """
    from mlops.validation import _gx

    the_suite = load_suite(suite)
    frame, dataset = _resolve_data(data)
    gx_run = _gx.run_suite(frame, the_suite.name, the_suite.expectations)
    report = _build_report(the_suite, gx_run, frame=frame, dataset=dataset)
    if log:
        _log_to_run(report, gx_run.result, run_id=run_id)
    if raise_on_failure and not report.success:
        failed = ", ".join(r.label for r in report.failures)
        raise DataValidationFailed(
            f"Data validation failed: suite {the_suite.name!r} on {_dataset_text(dataset)}: "
            f"{len(report.failures)} of {report.statistics['evaluated']} expectations failed "
            f"({failed}).",
            report=report,
        )
    return report


def _resolve_data(data: Any) -> tuple[pd.DataFrame, DatasetVersion | None]:
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(data, pd.DataFrame):
        return data, None
    from mlops import data as mlops_data

    if isinstance(data, (str, os.PathLike)):
        data = mlops_data.version(data)
    if isinstance(data, mlops_data.DatasetVersion):
        return mlops_data.read_dataframe(data), data
    raise DataError(
        f"validate() needs a pandas DataFrame or a DatasetVersion, got {type(data).__name__}.",
        hint="Pass mlops.data.version('data/train.csv') or a DataFrame.",
    )


# --- MLflow logging -----------------------------------------------------------------------
def _active_run() -> tuple[str, str | None] | None:
    """``(run_id, tracking_uri)`` of the active mlops or MLflow run, if any."""
    if importlib.util.find_spec("mlops.tracking") is not None:
        from mlops import tracking

        run = tracking.active_run()
        if run is not None:
            return run.run_id, run.tracking_uri
    mlflow = sys.modules.get("mlflow")  # no fluent run can be active if mlflow is not loaded
    if mlflow is not None:
        run = mlflow.active_run()
        if run is not None:
            return run.info.run_id, None
    return None


def _log_to_run(report: ValidationReport, result: Any, *, run_id: str | None = None) -> None:
    if run_id is not None:  # a given run (a candidate's): on the configured store
        from mlops.tracking import _apply_uris

        active: tuple[str, str | None] | None = (run_id, _apply_uris())
    else:
        active = _active_run()
    if active is None:
        return
    run_id, tracking_uri = active
    _write_report(report, _data_docs(report, result), run_id, tracking_uri)


def log_report(report: ValidationReport, *, run_id: str) -> None:
    """Log a report made earlier (e.g. by a pipeline stage) and its HTML page on a run.

    Writes ``mlops/validation/<suite>.json`` and ``.html``, as :func:`validate` does, so
    the reviewer page's Data Docs link of a pipeline-made request finds them.

    Example:
        >>> log_report(ValidationReport.from_dict(saved), run_id=mv.run_id)  # doctest: +SKIP
    """
    from mlops.tracking import _apply_uris

    _write_report(report, standalone_html(report), run_id, _apply_uris())


def _write_report(
    report: ValidationReport, page: str, run_id: str, tracking_uri: str | None
) -> None:
    mlflow = require("mlflow")
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    base = f"{_ARTIFACT_DIR}/{report.suite}"
    try:
        client.log_text(run_id, report.to_json(), f"{base}.json")
        client.log_text(run_id, page, f"{base}.html")
        client.log_metric(
            run_id,
            f"validation.{report.suite}.success_percent",
            report.statistics["success_percent"],
        )
        client.set_tag(run_id, f"mlops.validation.{report.suite}.digest", report.digest)
    except MlflowException as exc:
        raise TrackingError(
            f"Could not log validation report {report.suite!r} to MLflow run {run_id!r}: {exc}",
        ) from exc


def _data_docs(report: ValidationReport, result: Any) -> str:
    """GX's own Data Docs page; if GX cannot render it, a self-contained page of ours."""
    from mlops.validation import _gx

    try:
        return _gx.render_data_docs(result)
    except Exception as exc:  # the page is a view of the report: never lose the report over it
        _logger.warning(
            "Great Expectations could not render Data Docs for suite %r (%s: %s); logging a "
            "plain HTML page of the report instead.",
            report.suite,
            type(exc).__name__,
            exc,
        )
        return standalone_html(report)
