"""Stage ``evaluate``: score the new version against the champion alias on the eval set.

Thresholds come from the promotion policy (``checks.metrics`` of the target), so the
pipeline and the registry server judge with the same numbers. A failed threshold is data
(``passed: false`` in the metrics), not a stage failure: the ``request`` stage's policy
check is the gate.

Params: ``evaluate.champion`` (alias, e.g. ``production``), ``evaluate.target`` (label column),
``evaluate.policy_target`` (policy target whose thresholds apply).
Outputs: ``reports/evaluation.json``, ``metrics/eval.json`` (DVC metrics),
``plots/confusion.csv`` (actual, predicted) and ``plots/roc.csv`` (micro-average
one-vs-rest fpr, tpr) for ``dvc plots show``.

Example:
    >>> confusion_points([0, 1], [0, 0]).to_dict("records")  # doctest: +SKIP
    [{'actual': 0, 'predicted': 0}, {'actual': 1, 'predicted': 0}]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import _common

if TYPE_CHECKING:
    import pandas as pd

EVAL_CSV = Path("data/eval.csv")
MODEL_JSON = Path("reports/model.json")
REPORT_JSON = Path("reports/evaluation.json")
METRICS_JSON = Path("metrics/eval.json")
CONFUSION_CSV = Path("plots/confusion.csv")
ROC_CSV = Path("plots/roc.csv")


def confusion_points(actual: Sequence[Any], predicted: Sequence[Any]) -> pd.DataFrame:
    """One row per sample, the shape DVC's ``confusion`` template counts.

    Example:
        >>> confusion_points([0, 1], [0, 0])["predicted"].tolist()
        [0, 0]
    """
    import pandas as pd

    return pd.DataFrame({"actual": list(actual), "predicted": list(predicted)})


def roc_points(actual: Sequence[Any], scores: Any, classes: Sequence[Any]) -> pd.DataFrame:
    """Micro-averaged one-vs-rest ROC curve (``fpr``, ``tpr``) over ``classes``.

    ``scores`` is an (n_samples, n_classes) array of class probabilities, columns in the
    order of ``classes``.

    Example:
        >>> roc_points([0, 1], [[0.9, 0.1], [0.2, 0.8]], [0, 1]).iloc[-1].tolist()
        [1.0, 1.0]
    """
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_curve
    from sklearn.preprocessing import label_binarize

    onehot = label_binarize(list(actual), classes=list(classes))
    if onehot.shape[1] == 1:  # two classes: label_binarize returns one column
        onehot = np.hstack([1 - onehot, onehot])
    fpr, tpr, _ = roc_curve(onehot.ravel(), np.asarray(scores, dtype=float).ravel())
    return pd.DataFrame({"fpr": fpr.round(6), "tpr": tpr.round(6)})


def eval_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The ``metrics/eval.json`` view of an EvaluationReport dict (flat numbers, verdicts).

    Example:
        >>> eval_metrics({"metrics": {"candidate": {"accuracy": 0.9}, "champion": None},
        ...               "passed": True, "beats_champion": None, "champion_version": None,
        ...               "candidate_version": 2, "rows": 45})["accuracy"]
        0.9
    """
    metrics: dict[str, Any] = dict(report["metrics"]["candidate"])
    champion = report["metrics"]["champion"]
    if champion is not None:
        metrics["champion"] = dict(champion)
    metrics.update(
        passed=report["passed"],
        beats_champion=report["beats_champion"],
        candidate_version=report["candidate_version"],
        champion_version=report["champion_version"],
        rows=report["rows"],
    )
    return metrics


def policy_thresholds(
    policy_path: str | Path, target: str, model: str | None = None
) -> dict[str, dict[str, Any]]:
    """The metric thresholds the policy requires of ``model`` for ``target`` (may be empty).

    Example:
        >>> policy_thresholds("promotion-policy.yaml", "production", "iris")  # doctest: +SKIP
        {'accuracy': {'threshold': 0.8, 'min_absolute_change': 0.0, ...}}
    """
    from mlops.policy import load_policy

    rules = load_policy(policy_path).target(target, model).checks.metrics
    return {name: rule.model_dump() for name, rule in rules.items()}


def predictions(name: str, version: int, features: pd.DataFrame) -> tuple[list, Any, list]:
    """Labels, class probabilities (or one-hot labels) and classes of a registered model.

    Example:
        >>> labels, scores, classes = predictions("iris-classifier", 1, features)  # doctest: +SKIP
        >>> classes  # doctest: +SKIP
        [0, 1, 2]
    """
    import numpy as np

    from mlops.registry import load_model

    model = load_model(name, version)
    labels = [v.item() if hasattr(v, "item") else v for v in np.asarray(model.predict(features))]
    raw = model.get_raw_model() if hasattr(model, "get_raw_model") else None
    if raw is not None and hasattr(raw, "predict_proba") and hasattr(raw, "classes_"):
        return labels, raw.predict_proba(features), [c.item() for c in raw.classes_]
    classes = sorted(set(labels))
    return labels, [[float(label == c) for c in classes] for label in labels], classes


def main() -> None:
    """Evaluate the version in ``reports/model.json``; write reports, metrics and plots.

    Example:
        $ python -m pipelines.evaluate   # what `dvc repro` runs, from the repository root
    """
    from mlops.data import read_dataframe, version
    from mlops.evaluation import evaluate

    _common.at_root()
    p, model = _common.params("evaluate"), _common.read_json(MODEL_JSON)
    target = _common.need(p, "target", str, where="evaluate")
    # prepare's output, recorded in the workspace dvc.lock: the report names its md5
    dataset = version(EVAL_CSV, workspace=True)
    frame = read_dataframe(dataset)
    report = evaluate(
        model["name"],
        model["version"],
        data=dataset,
        target=target,
        champion=_common.need(p, "champion", str, where="evaluate"),
        thresholds=policy_thresholds(
            "promotion-policy.yaml",
            _common.need(p, "policy_target", str, where="evaluate"),
            model["name"],
        ),
    ).to_dict()
    _common.write_json(REPORT_JSON, report)
    _common.write_json(METRICS_JSON, eval_metrics(report))
    features = frame.drop(columns=[target])
    labels, scores, classes = predictions(model["name"], model["version"], features)
    CONFUSION_CSV.parent.mkdir(parents=True, exist_ok=True)
    confusion_points(frame[target].tolist(), labels).to_csv(CONFUSION_CSV, index=False)
    roc_points(frame[target].tolist(), scores, classes).to_csv(ROC_CSV, index=False)
    verdict = "passed" if report["passed"] else "did not pass"
    print(f"evaluate: version {model['version']} {verdict} the thresholds on {report['rows']} rows")


if __name__ == "__main__":
    raise SystemExit(_common.run(main))
