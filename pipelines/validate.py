"""Stage ``validate``: run the Great Expectations suite on the training data.

A failing suite fails the stage: exit code 1 and a message naming every failed
expectation. The report is written either way.

Params: ``validate.suite`` (a YAML path such as ``suites/iris_train.yaml``, or a suite name).
Outputs: ``reports/validation.json`` (the full report), ``metrics/validation.json`` (metrics).

Example:
    >>> failed_expectations(report.to_dict())  # doctest: +SKIP
    ["expect_column_values_to_be_between(column='petal width (cm)')"]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import DataValidationFailed
from pipelines import _common

if TYPE_CHECKING:
    from mlops.data import DatasetVersion

TRAIN_CSV = Path("data/train.csv")
REPORT_JSON = Path("reports/validation.json")
METRICS_JSON = Path("metrics/validation.json")


def failed_expectations(report: dict[str, Any]) -> list[str]:
    """``type[column] (what GX observed)`` for each failed expectation of a report dict.

    Example:
        >>> failed_expectations({"results": [
        ...     {"type": "expect_column_values_to_not_be_null", "column": "target",
        ...      "kwargs": {}, "success": False, "observed": {"unexpected_count": 2}}]})
        ['expect_column_values_to_not_be_null[target] (2 unexpected)']
    """
    from mlops.validation import ExpectationResult

    names = []
    for result in report.get("results", []):
        if result.get("success"):
            continue
        fields = {k: result.get(k) for k in ("type", "column", "success")}
        res = ExpectationResult(
            **fields, kwargs=result.get("kwargs") or {}, observed=result.get("observed") or {}
        )
        seen = res.summary()
        names.append(f"{res.label} ({seen})" if seen else res.label)
    return names


def validation_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The small metrics view of a ValidationReport dict for ``dvc metrics show``.

    Example:
        >>> stats = {"evaluated": 2, "successful": 2, "unsuccessful": 0, "success_percent": 100.0}
        >>> report = {"suite": "s", "success": True, "rows": 3, "statistics": stats}
        >>> validation_metrics(report)["rows"]
        3
    """
    stats = report["statistics"]
    return {
        "suite": report["suite"],
        "success": report["success"],
        "rows": report["rows"],
        "evaluated": stats["evaluated"],
        "unsuccessful": stats["unsuccessful"],
        "success_percent": stats["success_percent"],
    }


def check(report: dict[str, Any]) -> None:
    """Raise DataValidationFailed naming every failed expectation if the suite failed.

    Example:
        >>> check({"suite": "iris_train", "success": True, "results": []})
    """
    if report["success"]:
        return
    failed = failed_expectations(report)
    raise DataValidationFailed(
        f"Suite {report['suite']!r} failed {len(failed)} expectation(s) on the training data: "
        + "; ".join(failed)
        + ".",
        hint=f"Read {REPORT_JSON} for the observed values; fix the data or the suite, then "
        "run `dvc repro` again.",
    )


def main() -> None:
    """Validate ``data/train.csv`` with the suite from params and write the reports.

    Example:
        $ python -m pipelines.validate   # what `dvc repro` runs, from the repository root
    """
    from mlops.validation import validate

    _common.at_root()
    suite = _common.need(_common.params("validate"), "suite", str, where="validate")
    report = validate(train_data(), suite, log=False).to_dict()
    _common.write_json(REPORT_JSON, report)
    _common.write_json(METRICS_JSON, validation_metrics(report))
    check(report)
    print(f"validate: suite {report['suite']!r} passed on {report['rows']} rows")


def train_data() -> DatasetVersion:
    """The version of ``data/train.csv`` that ``prepare`` just recorded in ``dvc.lock``.

    Inside ``dvc repro`` that record is not committed yet, so it is versioned from the
    workspace: the report then names the data by path, md5 and the ``HEAD`` it is based on.

    Example:
        >>> train_data().path  # doctest: +SKIP
        'data/train.csv'
    """
    from mlops.data import version

    return version(TRAIN_CSV, workspace=True)


if __name__ == "__main__":
    raise SystemExit(_common.run(main))
