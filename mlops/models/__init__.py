"""Log a trained model into the active run, in a form that loads back safely.

Example:
    >>> import mlops
    >>> with mlops.start_run(datasets=[ds]):                               # doctest: +SKIP
    ...     info = mlops.log_model(model, name="model", input_example=x.head(3))
    >>> mv = mlops.register(info.model_uri, "churn")                       # doctest: +SKIP
"""

from mlops.models._log import log_model
from mlops.models._trust import OWNED_PACKAGES, untrusted_types

__all__ = ["OWNED_PACKAGES", "log_model", "untrusted_types"]
