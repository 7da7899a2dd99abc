"""Metric computation and thresholds for :mod:`mlops.evaluation`.

The pure half of an evaluation: which metrics a task computes, how a prediction is
scored, and how a :class:`MetricThreshold` (MLflow's meaning) judges a candidate against
a champion. Import the public names from :mod:`mlops.evaluation`.

Example:
    >>> from mlops.evaluation import MetricThreshold
    >>> _verdict("accuracy", MetricThreshold(threshold=0.8), 0.9, None).passed
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from mlops import _render
from mlops._directions import direction
from mlops._optional import require
from mlops.errors import EvaluationError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["GREATER_IS_BETTER", "MetricThreshold", "MetricVerdict", "Task"]

Task = Literal["classification", "regression"]

#: Direction of every metric :func:`evaluate` computes.
GREATER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "f1_macro": True,
    "precision_macro": True,
    "recall_macro": True,
    "rmse": False,
    "mae": False,
    "r2": True,
    "roc_auc_ovr": True,
}
_PRIMARY = {"classification": "accuracy", "regression": "rmse"}
_MAX_CLASSES = 20  # an integer target with more distinct values is treated as regression
_EPS = 1e-12  # float noise allowed in comparisons


@dataclass(frozen=True)
class MetricThreshold:
    """A pass rule for one metric, with MLflow ``MetricThreshold`` meaning.

    - ``threshold``: absolute bound (``>=`` if greater is better, else ``<=``).
    - ``min_absolute_change``: beat the champion by at least this much (``0.0``: tie is ok).
    - ``min_relative_change``: beat it by at least this fraction of ``abs(champion)``.
    - ``greater_is_better``: ``None`` (the default) takes the metric's known direction
      (``rmse``, ``mae``, ``log_loss``... lower; ``accuracy``, ``r2``... higher) when
      :func:`~mlops.evaluation.evaluate` applies it; a metric of unknown direction needs it.

    Example:
        >>> MetricThreshold(threshold=0.8, min_relative_change=0.01).greater_is_better is None
        True
    """

    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    greater_is_better: bool | None = None

    def __post_init__(self) -> None:
        for key in ("threshold", "min_absolute_change", "min_relative_change"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not _is_number(value)):
                raise EvaluationError(f"MetricThreshold.{key} must be a number; got {value!r}.")
        if self.greater_is_better is not None and not isinstance(self.greater_is_better, bool):
            raise EvaluationError(
                f"MetricThreshold.greater_is_better must be true or false; "
                f"got {self.greater_is_better!r}."
            )
        if self.min_absolute_change is not None and self.min_absolute_change < 0:
            raise EvaluationError(
                f"MetricThreshold.min_absolute_change must be >= 0; got {self.min_absolute_change}."
            )
        rel = self.min_relative_change
        if rel is not None and not 0 <= rel <= 1:
            raise EvaluationError(
                f"MetricThreshold.min_relative_change must be between 0 and 1; got {rel}.",
                hint="It is a fraction of the champion's value: 0.05 means 5% better.",
            )
        if self.threshold is None and self.min_absolute_change is None and rel is None:
            raise EvaluationError(
                "MetricThreshold needs at least one of threshold, min_absolute_change, "
                "min_relative_change; got none."
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the keys of the constructor)."""
        return asdict(self)


@dataclass(frozen=True)
class MetricVerdict:
    """The outcome of one metric's threshold; ``reasons`` name the numbers.

    Example:
        >>> v = MetricVerdict("accuracy", 0.71, None, False, ("accuracy 0.71 < threshold 0.8",))
        >>> v.to_dict()["passed"]
        False
    """

    metric: str
    candidate: float
    champion: float | None
    passed: bool
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, per the ``EvaluationReport`` contract."""
        return {
            "metric": self.metric,
            "candidate": self.candidate,
            "champion": self.champion,
            "passed": self.passed,
            "reasons": list(self.reasons),
        }


# --- thresholds -----------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _resolve_task(y: pd.Series, task: str | None) -> Task:
    if task is not None:
        if task not in ("classification", "regression"):
            raise EvaluationError(
                f"task must be 'classification' or 'regression'; got {task!r}.",
                hint="Leave task=None to infer it from the target column.",
            )
        return task  # type: ignore[return-value]
    pd = require("pandas")
    kind = y.dtype.kind
    if kind in "bOSU" or isinstance(y.dtype, pd.CategoricalDtype | pd.StringDtype):
        return "classification"
    if kind in "iu" and y.nunique() <= _MAX_CLASSES:
        return "classification"
    return "regression"


def _coerce_thresholds(
    thresholds: Mapping[str, MetricThreshold | Mapping[str, Any]] | None,
) -> dict[str, MetricThreshold]:
    rules: dict[str, MetricThreshold] = {}
    for metric, rule in (thresholds or {}).items():
        if isinstance(rule, Mapping):
            options = dict(rule)
            unknown = set(options) - set(MetricThreshold.__dataclass_fields__)
            if unknown:
                raise EvaluationError(
                    f"Unknown threshold option(s) {sorted(unknown)} for metric {metric!r}.",
                    hint="Use threshold, min_absolute_change, min_relative_change, "
                    "greater_is_better.",
                )
            rule = MetricThreshold(**options)
        if not isinstance(rule, MetricThreshold):
            raise EvaluationError(
                f"Threshold for {metric!r} must be a MetricThreshold or a mapping; "
                f"got {type(rule).__name__}."
            )
        rules[metric] = _directed(metric, rule)
    return rules


def _directed(metric: str, rule: MetricThreshold) -> MetricThreshold:
    """``rule`` with its direction set from the metric's, or an error naming the argument."""
    known = GREATER_IS_BETTER.get(metric, direction(metric))
    if rule.greater_is_better is None:
        if known is None:
            raise EvaluationError(
                f"thresholds[{metric!r}] has no greater_is_better and the direction of "
                f"{metric!r} is not known.",
                hint=f"Pass thresholds={{{metric!r}: MetricThreshold(..., "
                "greater_is_better=True)}} (or False when lower is better).",
            )
        return replace(rule, greater_is_better=known)
    if known is not None and rule.greater_is_better != known:
        raise EvaluationError(
            f"thresholds[{metric!r}] says greater_is_better={rule.greater_is_better}, "
            f"but {'higher' if known else 'lower'} {metric} is better.",
            hint=f"Pass thresholds={{{metric!r}: MetricThreshold(..., "
            f"greater_is_better={known})}} or leave greater_is_better out.",
        )
    return rule


def _check_metric_names(rules: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    unknown = sorted(set(rules) - set(metrics))
    if unknown:
        raise EvaluationError(
            f"Thresholds name metric(s) {unknown} that this evaluation does not compute; "
            f"it computes {sorted(metrics)}.",
            hint="Fix the metric names, or pass task= if the task was inferred wrongly.",
            unknown_metrics=unknown,
            computed_metrics=sorted(metrics),
        )


# --- scoring --------------------------------------------------------------------------
def _score(model: Any, features: pd.DataFrame, y_true: pd.Series, task: Task) -> dict[str, float]:
    y_pred = _predict(model, features)
    metrics = require("sklearn.metrics")
    try:
        if task == "classification":
            auc = _roc_auc(model, features, y_true)
            scores = {
                "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
                "f1_macro": float(
                    metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)
                ),
                "precision_macro": float(
                    metrics.precision_score(y_true, y_pred, average="macro", zero_division=0)
                ),
                "recall_macro": float(
                    metrics.recall_score(y_true, y_pred, average="macro", zero_division=0)
                ),
            }
            return scores if auc is None else {**scores, "roc_auc_ovr": auc}
        scores = {
            "rmse": float(metrics.root_mean_squared_error(y_true, y_pred)),
            "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
        }
        if len(y_true) > 1:  # r2 is undefined on a single row
            scores["r2"] = float(metrics.r2_score(y_true, y_pred))
        return scores
    except (TypeError, ValueError) as exc:
        raise EvaluationError(
            f"Could not compute {task} metrics for target {y_true.name!r}: {exc}",
            hint="Check that the predictions and the target have the same kind of values, "
            "or pass task= explicitly.",
        ) from exc


def _roc_auc(model: Any, features: pd.DataFrame, y_true: pd.Series) -> float | None:
    """One-vs-rest ROC AUC from the raw model's probabilities; ``None`` when it has none."""
    try:
        raw = model.get_raw_model()
    except (AttributeError, NotImplementedError):
        return None  # this flavor exposes no underlying model
    if not (hasattr(raw, "predict_proba") and hasattr(raw, "classes_")):
        return None
    metrics = require("sklearn.metrics")
    proba = raw.predict_proba(features)
    classes = list(raw.classes_)
    if not set(y_true.unique()) <= set(classes) or y_true.nunique() < 2:
        return None  # AUC is undefined for unseen labels or a single class
    if len(classes) == 2:
        return float(metrics.roc_auc_score(y_true, proba[:, 1]))
    return float(metrics.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))


def _predict(model: Any, features: pd.DataFrame) -> Any:
    np = require("numpy")
    pd = require("pandas")
    try:
        raw = model.predict(features)
    except Exception as exc:  # user model code: any failure is an evaluation error
        raise EvaluationError(
            f"The model failed to predict on the evaluation data: {exc}",
            hint="Check that the data has the columns and types of the model's signature.",
        ) from exc
    if isinstance(raw, pd.DataFrame):
        raw = raw.to_numpy()
    pred = np.asarray(raw)
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred.ravel()
    if pred.ndim != 1 or len(pred) != len(features):
        raise EvaluationError(
            f"The model returned predictions of shape {pred.shape} for {len(features)} rows; "
            "one prediction per row was expected.",
            hint="Evaluate a model whose predict() returns one label or value per row.",
        )
    return pred


def _verdict(
    metric: str, rule: MetricThreshold, cand: float, champion: Mapping[str, float] | None
) -> MetricVerdict:
    rule = _directed(metric, rule)
    gib = rule.greater_is_better
    f = _render.fmt
    champ = None if champion is None else champion.get(metric)
    checks: list[tuple[bool, str]] = []
    if rule.threshold is not None:
        ok = cand >= rule.threshold - _EPS if gib else cand <= rule.threshold + _EPS
        op = (">=" if ok else "<") if gib else ("<=" if ok else ">")
        checks.append((ok, f"{metric} {f(cand)} {op} threshold {f(rule.threshold)}"))
    for key in ("min_absolute_change", "min_relative_change"):
        if getattr(rule, key) is not None and champion is None:
            checks.append((True, f"{key} skipped: no champion to compare with"))
        elif (
            getattr(rule, key) is not None and champ is None
        ):  # as MLflow: a missing baseline fails
            checks.append((False, f"{key} failed: the champion has no {metric} to compare with"))
    if rule.min_absolute_change is not None and champ is not None:
        step = rule.min_absolute_change
        need = champ + step if gib else champ - step
        ok = cand >= need - _EPS if gib else cand <= need + _EPS
        op = (">=" if ok else "<") if gib else ("<=" if ok else ">")
        sign = "+" if gib else "-"
        checks.append(
            (
                ok,
                f"{metric} {f(cand)} {op} champion {f(champ)} {sign} min_absolute_change "
                f"{f(step)} = {f(need)}",
            )
        )
    if rule.min_relative_change is not None and champ is not None:
        checks.append(_relative_check(metric, rule, cand, champ))
    return MetricVerdict(
        metric=metric,
        candidate=cand,
        champion=champ,
        passed=all(ok for ok, _ in checks),
        reasons=tuple(reason for _, reason in checks),
    )


def _relative_check(
    metric: str, rule: MetricThreshold, cand: float, champ: float
) -> tuple[bool, str]:
    f = _render.fmt
    gib = rule.greater_is_better
    rel = float(rule.min_relative_change or 0.0)
    if champ == 0:  # MLflow's rule: fall back to "strictly better than the champion"
        ok = cand > champ if gib else cand < champ
        op = (">" if ok else "<=") if gib else ("<" if ok else ">=")
        return ok, f"{metric} {f(cand)} {op} champion 0 (relative change undefined at 0)"
    change = (cand - champ) / abs(champ) if gib else (champ - cand) / abs(champ)
    ok = change >= rel - _EPS
    return ok, (
        f"{metric} {f(cand)} improves on champion {f(champ)} by {change:+.2%}, "
        f"{'>=' if ok else '<'} min_relative_change {rel:.2%}"
    )


def _beats(
    task: Task,
    rules: Mapping[str, MetricThreshold],
    cand: Mapping[str, float],
    champ: Mapping[str, float] | None,
) -> bool | None:
    if champ is None:
        return None
    directions = {m: r.greater_is_better for m, r in rules.items()} or {
        _PRIMARY[task]: GREATER_IS_BETTER[_PRIMARY[task]]
    }
    # strictly better on every compared metric: a tie does not beat the champion
    return all(
        cand[m] > champ[m] + _EPS if gib else cand[m] < champ[m] - _EPS
        for m, gib in directions.items()
        if m in champ
    )
