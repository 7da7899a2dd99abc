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
import hashlib
import html
import importlib.util
import json
import logging
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops._gx import SuiteError
from mlops._optional import require
from mlops.errors import DataError, DataValidationFailed, NotFoundError, TrackingError

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
    "standalone_html",
    "validate",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SPEC_KEYS = frozenset({"type", "kwargs", "meta"})
_ARTIFACT_DIR = "mlops/validation"
_DATASET_IDENTITY = ("path", "md5", "rev", "remote")
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


# --- the report -------------------------------------------------------------------------
@dataclass(frozen=True)
class ExpectationResult:
    """One expectation's outcome; ``observed`` holds GX's result (counts, observed value).

    Example:
        >>> r = ExpectationResult("expect_column_to_exist", "a", {"column": "a"}, True, {})
        >>> r.to_dict()["success"]
        True
    """

    type: str
    column: str | None
    kwargs: dict[str, Any]
    success: bool
    observed: dict[str, Any]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExpectationResult:
        """Rebuild from :meth:`to_dict` output.

        Example:
            >>> ExpectationResult.from_dict({"type": "t", "success": True}).success
            True
        """
        return cls(
            type=str(data["type"]),
            column=data.get("column"),
            kwargs=dict(data.get("kwargs") or {}),
            success=bool(data["success"]),
            observed=dict(data.get("observed") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe ``{"type", "column", "kwargs", "success", "observed"}``."""
        return {
            "type": self.type,
            "column": self.column,
            "kwargs": _jsonable(self.kwargs),
            "success": self.success,
            "observed": _jsonable(self.observed),
        }

    @property
    def label(self) -> str:
        """``type[column]`` (or just ``type`` for table-level expectations)."""
        return f"{self.type}[{self.column}]" if self.column else self.type

    def summary(self) -> str:
        """A short human reading of ``observed`` (unexpected count, observed value, error).

        Example:
            >>> ExpectationResult("t", None, {}, False, {"observed_value": 3}).summary()
            'observed 3'
        """
        obs = self.observed
        if "exception" in obs:
            return f"error: {obs['exception']}"
        parts = []
        if obs.get("unexpected_count") is not None:
            pct = obs.get("unexpected_percent")
            pct_text = f" ({pct:.3g}%)" if isinstance(pct, (int, float)) else ""
            parts.append(f"{obs['unexpected_count']} unexpected{pct_text}")
            if obs.get("partial_unexpected_list"):
                parts.append(f"e.g. {obs['partial_unexpected_list'][:3]}")
        if "observed_value" in obs:
            parts.append(f"observed {obs['observed_value']!r}"[:120])
        return ", ".join(parts)


@dataclass(frozen=True)
class ValidationReport:
    """The result of :func:`validate`: one suite on one dataset.

    Example:
        >>> report = validate(frame, "iris_train", log=False)      # doctest: +SKIP
        >>> report.success, report.failures                        # doctest: +SKIP
        (True, ())
    """

    suite: str
    success: bool
    statistics: dict[str, Any]
    results: tuple[ExpectationResult, ...]
    dataset: DatasetVersion | None
    rows: int
    digest: str

    @property
    def failures(self) -> tuple[ExpectationResult, ...]:
        """The expectations that did not pass."""
        return tuple(r for r in self.results if not r.success)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict in the shared report layout (``suite``, ``success``, ...)."""
        return {
            "suite": self.suite,
            "success": self.success,
            "statistics": dict(self.statistics),
            "results": [r.to_dict() for r in self.results],
            "dataset": self.dataset.to_dict() if self.dataset is not None else None,
            "rows": self.rows,
            "digest": self.digest,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationReport:
        """Rebuild a report from :meth:`to_dict` output (e.g. read back from an evidence bundle).

        Example:
            >>> ValidationReport.from_dict(report.to_dict()) == report   # doctest: +SKIP
            True
        """
        from mlops.data import DatasetVersion

        try:
            dataset = data.get("dataset")
            return cls(
                suite=str(data["suite"]),
                success=bool(data["success"]),
                statistics=dict(data["statistics"]),
                results=tuple(ExpectationResult.from_dict(r) for r in data["results"]),
                dataset=DatasetVersion.from_dict(dataset) if dataset is not None else None,
                rows=int(data["rows"]),
                digest=str(data["digest"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"Not a ValidationReport dict: {exc!r} in keys {sorted(data)}.",
                hint="Pass the output of ValidationReport.to_dict().",
            ) from exc

    def to_json(self) -> str:
        """The report as pretty JSON text (what is logged to the MLflow run)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)

    def __str__(self) -> str:
        stats = self.statistics
        head = (
            f"Validation {'PASSED' if self.success else 'FAILED'}: suite {self.suite!r}, "
            f"{stats['successful']}/{stats['evaluated']} expectations "
            f"({stats['success_percent']:.1f}%) on {self.rows} rows"
        )
        lines = [head, f"  data:   {_dataset_text(self.dataset)}", f"  digest: {self.digest}"]
        for r in self.results:
            target = f" [{r.column}]" if r.column else ""
            detail = r.summary()
            lines.append(
                f"  {'PASS' if r.success else 'FAIL'}  {r.type}{target}"
                + (f"  {detail}" if detail and not r.success else "")
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return _report_html(self)


def _dataset_text(ds: DatasetVersion | None) -> str:
    if ds is None:
        return "in-memory DataFrame"
    return f"{ds.path}@{ds.rev[:10]} (md5 {ds.md5})"


def _report_html(report: ValidationReport) -> str:
    from mlops._render import badge, html_section, html_table

    esc = html.escape
    stats = report.statistics
    summary = (
        f"<p>suite <code>{esc(report.suite)}</code>: {stats['successful']}/{stats['evaluated']} "
        f"expectations ({stats['success_percent']:.1f}%) on {report.rows} rows; "
        f"data: {esc(_dataset_text(report.dataset))}; digest <code>{report.digest[:16]}</code></p>"
    )
    table = html_table(
        ["result", "expectation", "column", "kwargs", "observed"],
        [
            [
                badge(r.success, html_out=True),
                r.type,
                r.column,
                json.dumps(_jsonable(r.kwargs), sort_keys=True),
                r.summary(),
            ]
            for r in report.results
        ],
        raw_columns=[0],
    )
    return html_section("Validation", summary + table, passed=report.success)


# --- validate ---------------------------------------------------------------------------
def validate(
    data: pd.DataFrame | DatasetVersion | str | os.PathLike[str],
    suite: Suite | str | os.PathLike[str],
    *,
    raise_on_failure: bool = False,
    log: bool = True,
) -> ValidationReport:
    """Run an expectation suite on a DataFrame or a DVC dataset version.

    A failing suite is data in the report; :class:`~mlops.errors.DataValidationFailed`
    (carrying ``.report``) is raised only with ``raise_on_failure=True``. With ``log=True``
    and an active MLflow run, the report is logged as ``mlops/validation/<suite>.json``,
    GX Data Docs as ``mlops/validation/<suite>.html`` and the metric
    ``validation.<suite>.success_percent``.

    Example:
        >>> ds = mlops.data.version("data/train.csv")              # doctest: +SKIP
        >>> validate(ds, "iris_train", raise_on_failure=True)      # doctest: +SKIP
    """
    from mlops import _gx

    the_suite = load_suite(suite)
    frame, dataset = _resolve_data(data)
    gx_run = _gx.run_suite(frame, the_suite.name, the_suite.expectations)
    report = _build_report(the_suite, gx_run, frame=frame, dataset=dataset)
    if log:
        _log_to_run(report, gx_run.result)
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


def _build_report(
    suite: Suite, gx_run: Any, *, frame: pd.DataFrame, dataset: DatasetVersion | None
) -> ValidationReport:
    from mlops import _gx

    result = gx_run.result
    results = tuple(
        _expectation_result(spec, res)
        for spec, res in zip(suite.expectations, gx_run.results, strict=True)
    )
    stats = result.statistics
    statistics = {
        "evaluated": int(stats["evaluated_expectations"]),
        "successful": int(stats["successful_expectations"]),
        "unsuccessful": int(stats["unsuccessful_expectations"]),
        "success_percent": float(stats["success_percent"] or 0.0),
    }
    if dataset is not None:  # DVC identity; not the clone's location on this machine
        identity: dict[str, Any] = {k: getattr(dataset, k) for k in _DATASET_IDENTITY}
    else:
        identity = {
            "fingerprint": gx_run.fingerprint or _gx.frame_fingerprint(frame),
            "columns": [str(c) for c in frame.columns],
            "dtypes": [str(t) for t in frame.dtypes],
            "rows": len(frame),
        }
    body = {
        "suite": suite.to_dict(),
        "dataset": identity,
        "results": [r.to_dict() for r in results],
    }
    return ValidationReport(
        suite=suite.name,
        success=bool(result.success),
        statistics=statistics,
        results=results,
        dataset=dataset,
        rows=len(frame),
        digest=hashlib.sha256(_canonical_json(body)).hexdigest(),
    )


def _expectation_result(spec: Mapping[str, Any], res: Any) -> ExpectationResult:
    observed = dict(res.result or {})
    info = res.exception_info or {}
    if info.get("raised_exception") is True:
        observed["exception"] = info.get("exception_message")
    else:
        messages = [
            v.get("exception_message")
            for v in info.values()
            if isinstance(v, Mapping) and v.get("raised_exception")
        ]
        if messages:
            observed["exception"] = "; ".join(dict.fromkeys(str(m) for m in messages))
    kwargs = spec["kwargs"]
    column = kwargs.get("column")
    return ExpectationResult(
        type=spec["type"],
        column=str(column) if column is not None else None,
        kwargs=_jsonable(kwargs),
        success=bool(res.success),
        observed=_jsonable(observed),
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


def _log_to_run(report: ValidationReport, result: Any) -> None:
    active = _active_run()
    if active is None:
        return
    run_id, tracking_uri = active
    page = _data_docs(report, result)
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
    from mlops import _gx

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


def standalone_html(report: ValidationReport) -> str:
    """A self-contained HTML page of the report (no scripts, no external resources).

    Example:
        >>> standalone_html(report).startswith("<!DOCTYPE html>")   # doctest: +SKIP
        True
    """
    title = html.escape(f"Validation of suite {report.suite}")
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
        f'<body style="font-family:sans-serif">{report._repr_html_()}</body></html>\n'
    )


# --- JSON helpers -------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy scalars to Python, NaN/inf to None, sets sorted."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return _jsonable(item())
    tolist = getattr(value, "tolist", None)  # numpy arrays
    if callable(tolist):
        return _jsonable(tolist())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()
