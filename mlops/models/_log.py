"""``log_model``: one call for any scikit-learn estimator or pipeline (and a few boosters).

The private half of :mod:`mlops.models`. A scikit-learn model is saved with MLflow's
sklearn flavor in the skops format, trusting the types scikit-learn, NumPy and SciPy own
(see :mod:`mlops.models._trust`); LightGBM and XGBoost models go through their own MLflow
flavors. The signature is inferred from ``input_example`` and the model's predictions; a
scikit-learn model's requirements are read from the types its skops file holds
(:mod:`mlops.models._requirements`), without loading it in another interpreter.

Example:
    >>> with mlops.start_run(datasets=[ds]):                             # doctest: +SKIP
    ...     info = log_model(model, name="model", input_example=x.head(3))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mlops._optional import require
from mlops.errors import ConfigError, TrackingError

__all__ = ["log_model"]

# top-level package of the model's class -> (mlflow flavor module, model keyword)
_NATIVE_FLAVORS = {
    "lightgbm": ("mlflow.lightgbm", "lgb_model"),
    "xgboost": ("mlflow.xgboost", "xgb_model"),
}


def log_model(
    model: Any,
    *,
    name: str = "model",
    input_example: Any = None,
    signature: Any = None,
    trusted: Iterable[str] = (),
    pip_requirements: list[str] | None = None,
) -> Any:
    """Log ``model`` into the active run and return MLflow's ``ModelInfo``.

    Args:
        model: a fitted scikit-learn estimator or pipeline, or a LightGBM / XGBoost model.
        name: the logged model's name (``mlops.register(run, ...)`` looks for ``"model"``).
        input_example: a few input rows; the signature is inferred from them and the
            model's predictions, and they are stored next to the model.
        signature: an explicit MLflow signature (overrides the inferred one).
        trusted: fully qualified type names outside scikit-learn, NumPy and SciPy that
            you trust to be loaded back (skops refuses every other one).
        pip_requirements: the model's requirements. By default a scikit-learn model's are
            read from the types it holds (``mlops.models._requirements``) and a booster's
            are inferred by MLflow.

    Raises:
        UntrustedModelType: the model holds a type nobody vouched for; the message
            names it and the hint shows ``trusted=[...]``.
        TrackingError: no run is active, or MLflow refused the model.

    Example:
        >>> from sklearn.ensemble import RandomForestClassifier
        >>> with mlops.start_run(datasets=[ds]):                         # doctest: +SKIP
        ...     clf = RandomForestClassifier().fit(x, y)
        ...     info = mlops.log_model(clf, name="model", input_example=x.head(3))
        >>> info.model_uri                                               # doctest: +SKIP
        'models:/m-...'
    """
    mlflow = require("mlflow")
    if mlflow.active_run() is None:
        raise TrackingError(
            f"log_model({type(model).__name__}, name={name!r}) needs an active run.",
            hint="Call it inside `with mlops.start_run(datasets=[...]):`.",
        )
    if not hasattr(model, "predict"):
        raise ConfigError(
            f"log_model() takes a fitted model with predict(); got {type(model).__name__}.",
            hint="Pass a fitted scikit-learn estimator or pipeline.",
        )
    if signature is None and input_example is not None:
        signature = _infer_signature(model, input_example)
    options: dict[str, Any] = {"name": name, "input_example": input_example}
    if signature is not None:
        options["signature"] = signature
    if pip_requirements is not None:
        options["pip_requirements"] = list(pip_requirements)
    flavor, keyword = _flavor(model)
    if flavor == "mlflow.sklearn":
        from mlops.models._requirements import skops_requirements
        from mlops.models._trust import dump, skops_trusted_types

        data = dump(model)
        options["serialization_format"] = "skops"
        options["skops_trusted_types"] = skops_trusted_types(model, trusted, data=data)
        if pip_requirements is None:  # read off the dump, not by loading it in a subprocess
            options["pip_requirements"] = skops_requirements(data)
    return _log(require(flavor), keyword, model, options)


def _flavor(model: Any) -> tuple[str, str]:
    root = type(model).__module__.split(".", 1)[0]
    return _NATIVE_FLAVORS.get(root, ("mlflow.sklearn", "sk_model"))


def _infer_signature(model: Any, input_example: Any) -> Any:
    from mlflow.models import infer_signature

    try:
        prediction = model.predict(input_example)
    except Exception as exc:  # user model code: any failure means a bad example
        raise ConfigError(
            f"{type(model).__name__}.predict(input_example) failed: {exc}",
            hint="Pass input_example= rows with the columns the model was fitted on.",
        ) from exc
    return infer_signature(input_example, prediction)


def _log(flavor: Any, keyword: str, model: Any, options: dict[str, Any]) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return flavor.log_model(**{keyword: model}, **options)
    except MlflowException as exc:
        raise TrackingError(
            f"MLflow could not log {type(model).__name__} as {options['name']!r}: {exc.message}",
            hint="Read MLflow's reason above; the failed logged model cannot be registered.",
        ) from exc
