"""Stage ``prepare``: split scikit-learn's iris dataset into train and eval CSVs.

Params (``params.yaml``): ``prepare.test_size`` (fraction for eval), ``prepare.seed``.
Outputs: ``data/train.csv``, ``data/eval.csv`` (DVC-cached).

Example:
    >>> train, evaluation = split_frame(iris_frame(), test_size=0.3, seed=7)  # doctest: +SKIP
    >>> len(train), len(evaluation)  # doctest: +SKIP
    (105, 45)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlops.errors import ConfigError
from pipelines import _common

if TYPE_CHECKING:
    import pandas as pd

TRAIN_CSV = Path("data/train.csv")
EVAL_CSV = Path("data/eval.csv")
TARGET = "target"


def iris_frame() -> pd.DataFrame:
    """The iris dataset shipped with scikit-learn: four feature columns and ``target``.

    Example:
        >>> list(iris_frame().columns)[-1]  # doctest: +SKIP
        'target'
    """
    from sklearn.datasets import load_iris

    return load_iris(as_frame=True).frame


def split_frame(
    frame: pd.DataFrame, *, test_size: float, seed: int, target: str = TARGET
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` into (train, eval), stratified on ``target``, reproducible by ``seed``.

    Example:
        >>> train, evaluation = split_frame(iris_frame(), test_size=0.2, seed=0)  # doctest: +SKIP
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise ConfigError(
            f"prepare.test_size must be between 0 and 1 (exclusive), got {test_size!r}.",
            hint="Set prepare.test_size in params.yaml to a fraction such as 0.3.",
        )
    if target not in frame.columns:
        raise ConfigError(
            f"The dataset has no target column {target!r}; columns: {list(frame.columns)}.",
            hint="Name an existing column as the target.",
        )
    train, evaluation = train_test_split(
        frame, test_size=test_size, random_state=seed, stratify=frame[target]
    )
    return train.reset_index(drop=True), evaluation.reset_index(drop=True)


def main() -> None:
    """Read ``prepare`` params, write ``data/train.csv`` and ``data/eval.csv``.

    Example:
        $ python -m pipelines.prepare   # what `dvc repro` runs, from the repository root
    """
    _common.at_root()
    p = _common.params("prepare")
    train, evaluation = split_frame(
        iris_frame(),
        test_size=_common.need(p, "test_size", float, where="prepare"),
        seed=_common.need(p, "seed", int, where="prepare"),
    )
    TRAIN_CSV.parent.mkdir(parents=True, exist_ok=True)
    train.to_csv(TRAIN_CSV, index=False)
    evaluation.to_csv(EVAL_CSV, index=False)
    print(f"prepare: {len(train)} train rows, {len(evaluation)} eval rows")


if __name__ == "__main__":
    raise SystemExit(_common.run(main))
