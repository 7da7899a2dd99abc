"""Stage ``train``: fit a classifier in an MLflow run with DVC lineage and register it.

The run records ``data/train.csv`` as a DVC dataset version (md5 from the workspace
``dvc.lock``, written when ``prepare`` finished: ``mlops.data.version(..., workspace=True)``), the
hyperparameters and the training accuracy; the model is logged with a signature and
registered under ``train.name``.

Params: ``train.name``, ``train.model`` (``logistic_regression`` | ``random_forest`` |
``svc``), ``train.C``, ``train.max_iter``, ``train.n_estimators``, ``train.seed``.
Output: ``reports/model.json`` = ``{"name", "version", "run_id"}``.

Example:
    >>> estimator = make_estimator({"model": "logistic_regression", "C": 1.0,
    ...                             "max_iter": 200, "seed": 0})  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import ConfigError
from pipelines import _common

if TYPE_CHECKING:
    import pandas as pd

TRAIN_CSV = Path("data/train.csv")
MODEL_JSON = Path("reports/model.json")
TARGET = "target"
MODELS = ("logistic_regression", "random_forest", "svc")


def make_estimator(p: dict[str, Any]) -> Any:
    """An unfitted scikit-learn classifier built from the ``train`` params.

    Example:
        >>> type(make_estimator({"model": "svc", "C": 0.5, "seed": 1})).__name__
        'SVC'
    """
    kind = p.get("model", "logistic_regression")
    seed = p.get("seed", 0)
    if kind == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=float(p["C"]), max_iter=int(p["max_iter"]), random_state=seed)
    if kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=int(p["n_estimators"]), random_state=seed)
    if kind == "svc":
        from sklearn.svm import SVC

        return SVC(C=float(p["C"]), probability=True, random_state=seed)
    raise ConfigError(
        f"params.yaml train.model must be one of {', '.join(MODELS)}; got {kind!r}.",
        hint="Fix train.model in params.yaml.",
    )


def fit(frame: pd.DataFrame, estimator: Any, *, target: str = TARGET) -> tuple[Any, float]:
    """Fit ``estimator`` on ``frame`` (features = every column but ``target``).

    Returns the fitted estimator and its accuracy on the training data.

    Example:
        >>> model, accuracy = fit(train_frame, make_estimator(params))  # doctest: +SKIP
    """
    features, labels = frame.drop(columns=[target]), frame[target]
    estimator.fit(features, labels)
    return estimator, float(estimator.score(features, labels))


def train_and_register(
    frame: pd.DataFrame, dataset: Any, p: dict[str, Any], *, target: str = TARGET
) -> dict[str, Any]:
    """Train in an MLflow run recording ``dataset``; log and register the model.

    Returns ``{"name", "version", "run_id"}``.

    Example:
        >>> ds = mlops.data.version("data/train.csv", workspace=True)  # doctest: +SKIP
        >>> train_and_register(frame, ds, params)  # doctest: +SKIP
        {'name': 'iris-classifier', 'version': 1, 'run_id': '...'}
    """
    import mlflow

    import mlops
    from mlops.tracking import log_model_class

    hyper = {k: v for k, v in sorted(p.items()) if k != "name"}
    with mlops.start_run("train", datasets=[dataset], params=hyper) as run:
        model, accuracy = fit(frame, make_estimator(p), target=target)
        mlflow.log_metric("train.accuracy", accuracy)
        log_model_class(model)
        features = frame.drop(columns=[target])
        mlops.log_model(model, name="model", input_example=features.head(3))
    version = mlops.register(run, p["name"], tags={"mlops.pipeline.stage": "train"})
    return {"name": version.name, "version": version.version, "run_id": version.run_id}


def main() -> None:
    """Train on ``data/train.csv`` with the ``train`` params; write ``reports/model.json``.

    Example:
        $ python -m pipelines.train   # what `dvc repro` runs, from the repository root
    """
    from mlops.data import read_dataframe, version

    _common.at_root()
    p = _common.params("train")
    _common.need(p, "name", str, where="train")
    # prepare's output is recorded only in the workspace dvc.lock until the run is committed
    dataset = version(TRAIN_CSV, workspace=True)
    model = train_and_register(read_dataframe(dataset), dataset, p)
    _common.write_json(MODEL_JSON, model)
    print(f"train: registered {model['name']} version {model['version']} (run {model['run_id']})")


if __name__ == "__main__":
    raise SystemExit(_common.run(main))
