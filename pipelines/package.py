"""Stage ``package``: build a Bento for the new version and smoke-test it for real.

The smoke test serves the Bento and compares its predictions on a sample of the eval
data with the MLflow model's. A failed smoke test is data (``passed: false``): the
``request`` stage's policy check (``checks.smoke_test``) is the gate. A build failure
fails the stage.

Params: ``package.sample_rows`` (rows of ``data/eval.csv`` sent to the served Bento),
``package.target`` (label column dropped from the sample), ``package.port`` (port of the
smoke-test server; 0 or absent: a free one).
Output: ``reports/package.json``.

Example:
    >>> sample_frame(eval_frame, target="target", rows=5).shape  # doctest: +SKIP
    (5, 4)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlops.errors import ConfigError
from pipelines import _common

if TYPE_CHECKING:
    import pandas as pd

EVAL_CSV = Path("data/eval.csv")
MODEL_JSON = Path("reports/model.json")
REPORT_JSON = Path("reports/package.json")


def sample_frame(frame: pd.DataFrame, *, target: str, rows: int) -> pd.DataFrame:
    """The first ``rows`` rows of ``frame`` without the ``target`` column.

    Example:
        >>> import pandas as pd
        >>> sample_frame(pd.DataFrame({"x": [1, 2, 3], "target": [0, 1, 0]}),
        ...              target="target", rows=2).to_dict("list")
        {'x': [1, 2]}
    """
    if rows < 1:
        raise ConfigError(
            f"params.yaml package.sample_rows must be at least 1, got {rows!r}.",
            hint="Set package.sample_rows to a small positive number such as 10.",
        )
    return frame.drop(columns=[target], errors="ignore").head(rows).reset_index(drop=True)


def main() -> None:
    """Package the version in ``reports/model.json``; write ``reports/package.json``.

    Example:
        $ python -m pipelines.package   # what `dvc repro` runs, from the repository root
    """
    from mlops.data import read_dataframe, version
    from mlops.packaging import package

    _common.at_root()
    p, model = _common.params("package"), _common.read_json(MODEL_JSON)
    sample = sample_frame(
        read_dataframe(version(EVAL_CSV, workspace=True)),
        target=_common.need(p, "target", str, where="package"),
        rows=_common.need(p, "sample_rows", int, where="package"),
    )
    port = _common.need({"port": 0, **p}, "port", int, where="package")
    report = package(model["name"], model["version"], sample=sample, port=port or None).to_dict()
    _common.write_json(REPORT_JSON, report)
    smoke = report["smoke"]
    outcome = "passed" if smoke["passed"] else f"FAILED ({smoke['error'] or 'mismatches'})"
    print(f"package: {report['bento_tag']}, smoke test {outcome} on {smoke['rows']} rows")


if __name__ == "__main__":
    raise SystemExit(_common.run(main))
