"""The validation report: what :func:`mlops.validation.validate` returns, and how it is built.

:class:`ValidationReport` and :class:`ExpectationResult` are frozen, JSON-safe
(``to_dict``/``from_dict``), readable as text and as HTML in a notebook. The report is
built from a GX run and carries a sha256 digest of the suite, the dataset identity and
the results. Import the public names from :mod:`mlops.validation`.

Example:
    >>> from mlops.validation import ExpectationResult
    >>> ExpectationResult("expect_column_to_exist", "a", {"column": "a"}, True, {}).label
    'expect_column_to_exist[a]'
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops.errors import DataError
from mlops.validation._json import _canonical_json, _jsonable

if TYPE_CHECKING:
    import pandas as pd

    from mlops.data import DatasetVersion
    from mlops.validation._suite import Suite

__all__ = ["ExpectationResult", "ValidationReport", "standalone_html"]

_DATASET_IDENTITY = ("path", "md5", "rev", "remote")


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


# --- from a GX run ---------------------------------------------------------------------
def _build_report(
    suite: Suite, gx_run: Any, *, frame: pd.DataFrame, dataset: DatasetVersion | None
) -> ValidationReport:
    from mlops.validation import _gx

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


# --- JSON helpers -------------------------------------------------------------------------
