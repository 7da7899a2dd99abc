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

import copy
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops._optional import require
from mlops.errors import DataError, DataValidationFailed, NotFoundError, TrackingError
from mlops.validation._gx import SuiteError
from mlops.validation._report import (
    ExpectationResult,
    ValidationReport,
    _build_report,
    _canonical_json,
    _dataset_text,
    _jsonable,
    standalone_html,
)

if TYPE_CHECKING:
    import pandas as pd

    from mlops.data import DatasetVersion

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

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SPEC_KEYS = frozenset({"type", "kwargs", "meta"})
_ARTIFACT_DIR = "mlops/validation"
_logger = logging.getLogger(__name__)


class SuiteNotFound(NotFoundError):
    """No suite file for a bare suite name."""

    code = "suite_not_found"
    default_hint = "Create suites/<name>.yaml in the project root, or pass a path to the file."


# --- suites -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Suite:
    """A named list of GX expectations, each ``{"type": ..., "kwargs": {...}}``.

    The structure is checked here; the types and kwargs are checked against GX when the
    suite runs (:class:`SuiteError` names the expectation and the fix).

    Example:
        >>> s = Suite("iris", [{"type": "expect_column_to_exist", "kwargs": {"column": "target"}}])
        >>> s.name, len(s.expectations)
        ('iris', 1)
    """

    name: str
    expectations: tuple[dict[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SuiteError(
                f"Suite name {self.name!r} is not valid: use letters, digits, '_', '-' or '.'.",
                hint="Name it like 'iris_train'; the name is used in file and metric names.",
            )
        if isinstance(self.expectations, (str, bytes, Mapping)) or not isinstance(
            self.expectations, Sequence
        ):
            raise SuiteError(
                f"Suite {self.name!r}: expectations must be a list of mappings, "
                f"got {type(self.expectations).__name__}.",
            )
        if not self.expectations:
            raise SuiteError(
                f"Suite {self.name!r} has no expectations.",
                hint="Add at least one {'type': 'expect_...', 'kwargs': {...}} entry.",
            )
        specs = tuple(_check_spec(self.name, i, spec) for i, spec in enumerate(self.expectations))
        object.__setattr__(self, "expectations", specs)

    def __hash__(self) -> int:
        return hash(_canonical_json(self.to_dict()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, default_name: str | None = None) -> Suite:
        """Build from ``{"name": ..., "expectations": [...]}`` (the YAML layout).

        Example:
            >>> Suite.from_dict({"name": "s", "expectations": [
            ...     {"type": "expect_column_to_exist", "kwargs": {"column": "a"}}]}).name
            's'
        """
        if not isinstance(data, Mapping):
            raise SuiteError(f"A suite must be a mapping, got {type(data).__name__}.")
        unknown = sorted(set(data) - {"name", "expectations"})
        if unknown:
            raise SuiteError(
                f"Suite {data.get('name', default_name)!r} has unknown key(s) {unknown}.",
                hint="A suite has only 'name' (default: the file name) and 'expectations'.",
            )
        name = data.get("name", default_name)
        return cls(name, data.get("expectations") or [])

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Suite:
        """Read a suite from a YAML file; the name defaults to the file's stem.

        Example:
            >>> Suite.from_yaml("suites/iris_train.yaml").name   # doctest: +SKIP
            'iris_train'
        """
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SuiteNotFound(f"Suite file {str(path)!r} does not exist.") from exc
        except (OSError, yaml.YAMLError) as exc:
            raise SuiteError(
                f"Cannot read suite file {str(path)!r}: {exc}",
                hint="Fix the YAML syntax; the layout is {name: ..., expectations: [...]}.",
            ) from exc
        return cls.from_dict(data or {}, default_name=path.stem)

    def to_dict(self) -> dict[str, Any]:
        """The definition as JSON-safe data (what the report digest covers).

        Example:
            >>> Suite("s", [{"type": "expect_column_to_exist", "kwargs": {"column": "a"}}]
            ...       ).to_dict()["expectations"][0]["type"]
            'expect_column_to_exist'
        """
        return {"name": self.name, "expectations": _jsonable(list(self.expectations))}


def _check_spec(suite: str, index: int, spec: Any) -> dict[str, Any]:
    where = f"Suite {suite!r}, expectation #{index}"
    if not isinstance(spec, Mapping):
        raise SuiteError(f"{where} must be a mapping, got {spec!r}.")
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise SuiteError(
            f"{where} has unknown key(s) {unknown}.",
            hint="Each expectation has 'type', 'kwargs' and optionally 'meta'.",
        )
    kind = spec.get("type")
    if not isinstance(kind, str) or not kind.startswith("expect_"):
        raise SuiteError(
            f"{where}: 'type' must be an expectation name starting with 'expect_', got {kind!r}.",
        )
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise SuiteError(f"{where} ({kind}): 'kwargs' must be a mapping, got {kwargs!r}.")
    out: dict[str, Any] = {"type": kind, "kwargs": copy.deepcopy(dict(kwargs))}
    if spec.get("meta"):
        out["meta"] = copy.deepcopy(dict(spec["meta"]))
    return out


def load_suite(suite: Suite | str | os.PathLike[str]) -> Suite:
    """A :class:`Suite` from itself, a YAML path, or a bare name.

    A bare name (``"iris_train"``) is looked up as ``suites/<name>.yaml`` (or ``.yml``)
    under the current directory, then under the DVC root (``MLOPS_DVC_ROOT`` or the
    nearest parent holding ``.dvc/``).

    Example:
        >>> load_suite("iris_train").name                            # doctest: +SKIP
        'iris_train'
    """
    if isinstance(suite, Suite):
        return suite
    if not isinstance(suite, (str, os.PathLike)):
        raise SuiteError(
            f"Expected a Suite, a YAML path or a suite name, got {type(suite).__name__}.",
        )
    text = os.fspath(suite)
    if isinstance(suite, os.PathLike) or "/" in text or text.endswith((".yaml", ".yml")):
        return Suite.from_yaml(text)
    candidates = [
        base / "suites" / f"{text}{ext}" for base in _roots() for ext in (".yaml", ".yml")
    ]
    for path in candidates:
        if path.is_file():
            return Suite.from_yaml(path)
    tried = ", ".join(str(p) for p in candidates[::2])
    raise SuiteNotFound(f"No suite named {text!r}: looked for {tried}.")


def _roots() -> list[Path]:
    roots = [Path.cwd()]
    dvc_root = os.environ.get("MLOPS_DVC_ROOT")
    if dvc_root:
        roots.append(Path(dvc_root))
    else:
        found = next((p for p in (Path.cwd(), *Path.cwd().parents) if (p / ".dvc").is_dir()), None)
        if found is not None:
            roots.append(found)
    return list(dict.fromkeys(p.resolve() for p in roots))


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
