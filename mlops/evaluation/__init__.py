"""Score a candidate model version against the current champion on the same data.

Example:
    >>> from mlops.evaluation import MetricThreshold, evaluate
    >>> report = evaluate("churn", 3, data=ds, target="label",  # doctest: +SKIP
    ...                   thresholds={"accuracy": MetricThreshold(threshold=0.9)})
    >>> report.passed  # doctest: +SKIP
    True
"""

from mlops.evaluation._evaluate import REPORT_ARTIFACT, EvaluationReport, evaluate, score
from mlops.evaluation._metrics import GREATER_IS_BETTER, MetricThreshold, MetricVerdict, Task

__all__ = [
    "GREATER_IS_BETTER",
    "REPORT_ARTIFACT",
    "EvaluationReport",
    "MetricThreshold",
    "MetricVerdict",
    "Task",
    "evaluate",
    "score",
]
