"""Score a candidate model version against the current champion on the same data.

The champion is whichever version holds the alias ``champion`` (``production`` by
default). Both are loaded as MLflow pyfunc models and scored on one DataFrame (or a
DVC-pinned :class:`~mlops.data.DatasetVersion`). Thresholds have MLflow's
``MetricThreshold`` meaning.

``passed`` is true when every thresholded metric passed (no thresholds: nothing to fail).
``beats_champion`` is ``None`` without a champion; otherwise the candidate must be at
least as good as the champion on every thresholded metric, or, with no thresholds, on the
primary metric (``accuracy`` for classification, ``rmse`` for regression).

Metrics: classification gives ``accuracy``, ``f1_macro``, ``precision_macro``,
``recall_macro`` and, when the underlying model has ``predict_proba``, ``roc_auc_ovr``;
regression gives ``rmse``, ``mae`` and ``r2``. The task is inferred from the target
(labels: bool, text, categorical, or integers with at most 20 distinct values) unless given.

Example:
    >>> from mlops.evaluation import evaluate, MetricThreshold
    >>> report = evaluate("churn", 3, data=ds, target="label",                 # doctest: +SKIP
    ...                   thresholds={"accuracy": MetricThreshold(threshold=0.8,
    ...                                                           min_absolute_change=0.0)})
    >>> report.passed, report.beats_champion                                   # doctest: +SKIP
    (True, True)
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops import _render
from mlops._optional import require
from mlops.errors import EvaluationError, RegistryError, TrackingError
from mlops.evaluation._metrics import (
    _PRIMARY,
    GREATER_IS_BETTER,
    MetricThreshold,
    MetricVerdict,
    Task,
    _beats,
    _check_metric_names,
    _coerce_thresholds,
    _resolve_task,
    _score,
    _verdict,
)
from mlops.registry import _client
from mlops.registry import _mlflow_version as _model_version

if TYPE_CHECKING:
    import pandas as pd

    from mlops.data import DatasetVersion

__all__ = [
    "GREATER_IS_BETTER",
    "EvaluationReport",
    "MetricThreshold",
    "MetricVerdict",
    "evaluate",
    "score",
]

REPORT_ARTIFACT = "mlops/evaluation/report.json"


@dataclass(frozen=True)
class EvaluationReport:
    """Candidate vs. champion on one dataset: metrics, per-metric verdicts, notes.

    Example:
        >>> report = evaluate("churn", 3, data=df, target="label")  # doctest: +SKIP
        >>> report.to_dict()["metrics"]["candidate"]["accuracy"]     # doctest: +SKIP
        0.93
    """

    model: str
    candidate_version: int
    champion_alias: str
    champion_version: int | None
    task: Task
    dataset: dict[str, Any] | None
    rows: int
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    verdicts: tuple[MetricVerdict, ...]
    beats_champion: bool | None
    passed: bool
    notes: tuple[str, ...] = field(default=())
    #: MLflow run of the champion version: with its version, the champion the verdict is
    #: bound to (a re-registered name gets the same number but another run)
    champion_run_id: str | None = None
    #: the label column scored against (recorded so the evaluation can be re-run)
    label: str | None = None

    @property
    def failures(self) -> tuple[MetricVerdict, ...]:
        """The verdicts that did not pass."""
        return tuple(v for v in self.verdicts if not v.passed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, exactly the contract's keys (``label`` only when known)."""
        out = {
            "model": self.model,
            "candidate_version": self.candidate_version,
            "champion_alias": self.champion_alias,
            "champion_version": self.champion_version,
            "champion_run_id": self.champion_run_id,
            "task": self.task,
            "dataset": dict(self.dataset) if self.dataset is not None else None,
            "rows": self.rows,
            "metrics": {
                "candidate": dict(self.candidate_metrics),
                "champion": dict(self.champion_metrics)
                if self.champion_metrics is not None
                else None,
            },
            "verdicts": [v.to_dict() for v in self.verdicts],
            "beats_champion": self.beats_champion,
            "passed": self.passed,
            "notes": list(self.notes),
        }
        if self.label is not None:
            out["label"] = self.label
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvaluationReport:
        """Rebuild a report from :meth:`to_dict` output (e.g. read back from evidence)."""
        try:
            return cls(
                model=d["model"],
                candidate_version=int(d["candidate_version"]),
                champion_alias=d["champion_alias"],
                champion_version=d["champion_version"],
                task=d["task"],
                dataset=d["dataset"],
                rows=int(d["rows"]),
                candidate_metrics=dict(d["metrics"]["candidate"]),
                champion_metrics=d["metrics"]["champion"],
                verdicts=tuple(
                    MetricVerdict(**{**v, "reasons": tuple(v["reasons"])}) for v in d["verdicts"]
                ),
                beats_champion=d["beats_champion"],
                passed=bool(d["passed"]),
                notes=tuple(d["notes"]),
                champion_run_id=d.get("champion_run_id"),
                label=d.get("label"),
            )
        except (KeyError, TypeError) as exc:
            raise EvaluationError(f"Not an evaluation report dict: missing or bad {exc}.") from exc

    def _metric_rows(self) -> list[list[Any]]:
        rows = []
        for name, value in self.candidate_metrics.items():
            champ = (self.champion_metrics or {}).get(name)
            delta = None if champ is None else value - champ
            rows.append([name, value, champ, delta])
        return rows

    def _title(self) -> str:
        champ = (
            f"{self.champion_alias} = v{self.champion_version}"
            if self.champion_version is not None
            else f"no {self.champion_alias} champion"
        )
        return f"Evaluation of {self.model} v{self.candidate_version} ({self.task}) vs {champ}"

    def __str__(self) -> str:
        lines = [f"{self._title()}: {_render.badge(self.passed)}", f"rows: {self.rows}"]
        lines.append(f"beats champion: {_render.fmt(self.beats_champion)}")
        lines.append(
            _render.text_table(["metric", "candidate", "champion", "delta"], self._metric_rows())
        )
        for v in self.verdicts:
            lines.append(f"{_render.badge(v.passed)} {v.metric}: {'; '.join(v.reasons)}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        metrics = _render.html_table(
            ["metric", "candidate", "champion", "delta vs champion"], self._metric_rows()
        )
        verdict_rows = [
            [_render.badge(v.passed, html_out=True), v.metric, "; ".join(v.reasons)]
            for v in self.verdicts
        ]
        verdicts = _render.html_table(["", "metric", "why"], verdict_rows, raw_columns=[0])
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        body = (
            f"<p>rows: {self.rows}; beats champion: {_render.fmt(self.beats_champion)}</p>"
            f"{metrics}{verdicts if self.verdicts else ''}"
            f"{f'<ul>{notes}</ul>' if notes else ''}"
        )
        return _render.html_section(self._title(), body, passed=self.passed)


def evaluate(
    name: str,
    version: int | str,
    *,
    data: DatasetVersion | pd.DataFrame | str,
    target: str,
    champion: str = "production",
    thresholds: Mapping[str, MetricThreshold | Mapping[str, Any]] | None = None,
    task: Task | None = None,
    log: bool = True,
) -> EvaluationReport:
    """Score version ``version`` of ``name`` and the ``champion`` alias holder on ``data``.

    ``data`` is a DataFrame, a :class:`~mlops.data.DatasetVersion` (read at its pinned
    rev) or a DVC-tracked path. ``target`` is the label column; every other column is a
    feature. With ``log=True`` the report is written to the candidate's run (and to the
    active ``mlops.start_run`` run, if that is another one) as
    ``mlops/evaluation/report.json``, with the metrics as ``eval.<metric>`` and the
    champion's as ``eval.champion.<metric>``.

    Example:
        >>> report = evaluate("churn", 3, data=df, target="label",            # doctest: +SKIP
        ...                   thresholds={"accuracy": {"threshold": 0.8}})
        >>> print(report)                                                     # doctest: +SKIP
    """
    version = _as_version(version)
    frame, dataset = _load_data(data)
    features, y_true = _split(frame, target)
    task = _resolve_task(y_true, task)
    rules = _coerce_thresholds(thresholds)
    notes: list[str] = []

    client = _client()
    candidate_metrics = _score(_load_model(client, name, version), features, y_true, task)
    _check_metric_names(rules, candidate_metrics)
    champ_version, champ_run_id = _champion_version(client, name, champion)
    champion_metrics = None
    if champ_version is None:
        notes.append(
            f"No model holds the alias '{champion}' yet: only absolute thresholds applied; "
            "min_absolute_change and min_relative_change were skipped."
        )
    elif champ_version == version:
        notes.append(f"The candidate itself holds '{champion}'; it is compared with itself.")
        champion_metrics = dict(candidate_metrics)
    else:
        model = _load_model(client, name, champ_version)
        champion_metrics = _score(model, features, y_true, task)

    verdicts = tuple(
        _verdict(metric, rule, candidate_metrics[metric], champion_metrics)
        for metric, rule in rules.items()
    )
    if not rules:
        notes.append(
            f"No thresholds given: passed has nothing to check; beats_champion compares "
            f"the primary metric ({_PRIMARY[task]})."
        )
    report = EvaluationReport(
        model=name,
        candidate_version=version,
        champion_alias=champion,
        champion_version=champ_version,
        task=task,
        dataset=dataset,
        rows=len(frame),
        candidate_metrics=candidate_metrics,
        champion_metrics=champion_metrics,
        verdicts=verdicts,
        beats_champion=_beats(task, rules, candidate_metrics, champion_metrics),
        passed=all(v.passed for v in verdicts),
        notes=tuple(notes),
        champion_run_id=champ_run_id,
        label=target,
    )
    if log:
        report = _log(client, report)
    return report


def score(
    model: Any, frame: pd.DataFrame, *, label: str, task: Task | None = None
) -> dict[str, float]:
    """The metrics :func:`evaluate` computes, for a loaded (pyfunc) ``model`` on ``frame``.

    ``label`` is the target column; every other column is a feature. This is the scoring
    half of :func:`evaluate` without the registry: a verifier that loaded the model itself
    gets exactly the numbers the evaluation recorded.

    Example:
        >>> score(mlflow.pyfunc.load_model(path), df, label="target")  # doctest: +SKIP
        {'accuracy': 0.97, 'f1_macro': 0.97, ...}
    """
    features, y_true = _split(frame, label)
    return _score(model, features, y_true, _resolve_task(y_true, task))


# --- inputs ---------------------------------------------------------------------------
def _as_version(version: int | str) -> int:
    try:
        number = int(version)
    except (TypeError, ValueError) as exc:
        raise EvaluationError(
            f"Model version must be a positive integer; got {version!r}.",
            hint="Pass the registered version number, e.g. 3.",
        ) from exc
    if number < 1:
        raise EvaluationError(f"Model version must be a positive integer; got {version!r}.")
    return number


def _load_data(data: Any) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    pd = require("pandas")
    if isinstance(data, pd.DataFrame):
        return data, None
    from mlops import data as dvc_data

    if isinstance(data, str):
        data = dvc_data.version(data)
    if not hasattr(data, "md5") or not hasattr(data, "to_dict"):
        raise EvaluationError(
            f"data must be a pandas DataFrame, a DatasetVersion or a DVC-tracked path; "
            f"got {type(data).__name__}.",
        )
    return dvc_data.read_dataframe(data), data.to_dict()


def _split(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.Series]:
    if target not in frame.columns:
        raise EvaluationError(
            f"Target column {target!r} is not in the evaluation data; its columns are "
            f"{list(map(str, frame.columns))}.",
            hint="Pass target= the name of the label column.",
        )
    if len(frame) == 0:
        raise EvaluationError(
            "The evaluation data has no rows.", hint="Evaluate on a non-empty set."
        )
    return frame.drop(columns=[target]), frame[target]


# --- MLflow ---------------------------------------------------------------------------


def _champion_version(client: Any, name: str, alias: str) -> tuple[int | None, str | None]:
    """The champion's version and run id, ``(None, None)`` when nobody holds ``alias``."""
    mlflow = require("mlflow")
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as exc:
        if "not found" in str(exc).lower() or exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None, None  # no such alias yet: there is no champion
        raise RegistryError(
            f"Could not read alias {alias!r} of model {name!r}: {exc}",
            hint="Check the alias name (letters, digits, '_' and '-').",
        ) from exc
    return int(mv.version), mv.run_id or None


def _load_model(client: Any, name: str, version: int) -> Any:
    _model_version(client, name, version)
    mlflow = require("mlflow")
    try:
        return mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(
            f"Could not load model {name!r} version {version} as a pyfunc model: {exc}",
            hint="Log the model with an MLflow flavor that supports pyfunc.",
        ) from exc


def _log(client: Any, report: EvaluationReport) -> EvaluationReport:
    """Log to the candidate's run and to the active ``mlops.start_run`` run, if another."""
    from dataclasses import replace

    from mlops.tracking import active_run

    runs = [_model_version(client, report.model, report.candidate_version).run_id]
    current = active_run()
    if current is not None and current.run_id not in runs:
        runs.append(current.run_id)
    if not runs[0]:
        runs.pop(0)
        report = replace(
            report, notes=(*report.notes, "The candidate version has no MLflow run to log to.")
        )
    for run_id in runs:
        _log_to_run(client, run_id, report)
    return report


def _log_to_run(client: Any, run_id: str, report: EvaluationReport) -> None:
    mlflow = require("mlflow")
    metrics = {f"eval.{k}": v for k, v in report.candidate_metrics.items()}
    metrics.update({f"eval.champion.{k}": v for k, v in (report.champion_metrics or {}).items()})
    now = _now_ms()
    try:
        _log_dataset(client, run_id, report.dataset)
        client.log_text(run_id, json.dumps(report.to_dict(), indent=2), REPORT_ARTIFACT)
        client.log_batch(
            run_id, metrics=[mlflow.entities.Metric(k, v, now, 0) for k, v in metrics.items()]
        )
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"Could not log the evaluation to run {run_id}: {exc}") from exc


def _log_dataset(client: Any, run_id: str, dataset: dict[str, Any] | None) -> None:
    """The DVC evaluation data as a run input (context ``evaluation``), as ``start_run``
    logs training data: ``mlops.lineage`` finds the run by its md5."""
    if dataset is None:
        return
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source = {"uri": f"{dataset['path']}@{dataset['rev']}", **dataset}
    entity = Dataset(
        name=dataset["path"], digest=dataset["md5"], source_type="dvc", source=json.dumps(source)
    )
    tag = InputTag(key="mlflow.data.context", value="evaluation")
    client.log_inputs(run_id, datasets=[DatasetInput(dataset=entity, tags=[tag])])


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
