"""Which way is better for the metrics people put in policies and thresholds.

Shared by :mod:`mlops.policy` (a policy file's ``checks.metrics``) and
:mod:`mlops.evaluation` (``MetricThreshold``), so both read ``rmse: {threshold: 70}``
as "rmse <= 70".

Example:
    >>> direction("rmse"), direction("ROC AUC"), direction("my_score")
    (False, True, None)
"""

from __future__ import annotations

__all__ = ["KNOWN", "direction"]

_HIGHER = [
    "accuracy",
    "balanced_accuracy",
    "top_k_accuracy",
    "f1",
    "f1_macro",
    "f1_micro",
    "f1_weighted",
    "f1_score",
    "precision",
    "precision_macro",
    "precision_micro",
    "precision_weighted",
    "recall",
    "recall_macro",
    "recall_micro",
    "recall_weighted",
    "roc_auc",
    "roc_auc_ovr",
    "roc_auc_ovo",
    "auc",
    "pr_auc",
    "average_precision",
    "r2",
    "r2_score",
    "explained_variance",
    "jaccard",
    "matthews_corrcoef",
    "mcc",
    "cohen_kappa",
    "ndcg",
    "map",
]
_LOWER = [
    "rmse",
    "mse",
    "mae",
    "mape",
    "smape",
    "median_absolute_error",
    "max_error",
    "log_loss",
    "logloss",
    "cross_entropy",
    "brier_score",
    "hinge_loss",
    "mean_squared_error",
    "root_mean_squared_error",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_log_error",
    "rmsle",
    "mean_poisson_deviance",
    "mean_gamma_deviance",
    "error_rate",
    "latency",
    "latency_ms",
]

#: normalised metric name -> greater is better
KNOWN: dict[str, bool] = {**dict.fromkeys(_HIGHER, True), **dict.fromkeys(_LOWER, False)}


def _normalise(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").replace(".", " ").split())


def direction(metric: str) -> bool | None:
    """``True`` if higher ``metric`` is better, ``False`` if lower, ``None`` if unknown.

    Example:
        >>> direction("log-loss"), direction("f1_macro")
        (False, True)
    """
    return KNOWN.get(_normalise(metric))
