"""`import mlops` stays cheap: none of the wrapped tools load until a function needs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("mlflow", "dvc", "great_expectations", "bentoml", "sklearn", "pandas")


def _loaded_after(statement: str) -> list[str]:
    code = (
        f"{statement}\n"
        "import json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "statement",
    [
        "import mlops",
        "import mlops.errors",
        "import mlops.config",
        "import mlops; mlops.__version__; dir(mlops)",
        "from mlops import data, tracking, registry",
    ],
)
def test_import_loads_no_heavy_tool(statement):
    assert _loaded_after(statement) == []


def test_heavy_tool_loads_on_first_use(tmp_path):
    """The probe itself works: touching the MLflow layer does import mlflow."""
    loaded = _loaded_after(
        "import os; os.environ['MLOPS_HOME'] = " + repr(str(tmp_path)) + "\n"
        "import mlops; mlops.tracking.configure()"
    )
    assert "mlflow" in loaded


def test_missing_public_name_is_an_attribute_error():
    import mlops

    with pytest.raises(AttributeError, match="module 'mlops' has no attribute 'nope'"):
        mlops.nope  # noqa: B018
