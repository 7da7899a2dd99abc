"""Quiet by default: the wrapped tools' bars and INFO lines only with MLOPS_LOG_LEVEL=info."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import logging, sys, mlops, mlflow
from sklearn.linear_model import LogisticRegression
clf = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
with mlops.start_run("quiet"):
    info = mlflow.sklearn.log_model(clf, name="model")
mlops.register(info.model_uri, "quiet-model")
print("mlflow level", logging.getLevelName(logging.getLogger("mlflow").getEffectiveLevel()))
"""


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    tmp_path.mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base.update(MLOPS_HOME=str(tmp_path), MLOPS_TRACKING_URI=uri, **env)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=base, capture_output=True, text=True
    )


@pytest.mark.slow
def test_the_library_is_quiet_by_default_and_loud_on_request(tmp_path: Path) -> None:
    quiet = _run(tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "mlflow level WARNING" in quiet.stdout
    assert "INFO" not in quiet.stderr and "Successfully registered model" not in quiet.stderr
    loud = _run(tmp_path / "loud", MLOPS_LOG_LEVEL="info")
    assert loud.returncode == 0, loud.stderr
    assert "mlflow level INFO" in loud.stdout
    assert "Successfully registered model 'quiet-model'" in loud.stderr


def test_configure_sets_defaults_the_user_can_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops import _quiet

    for name in ("MLOPS_LOG_LEVEL", "TQDM_DISABLE", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        monkeypatch.setenv(name, "-")  # so that the teardown restores what was there
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "DEBUG")
    assert _quiet.configure() is True
    assert os.environ["TQDM_DISABLE"] == "1"
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "DEBUG"  # the user's choice stands
    assert _quiet.configure(verbose=True) is False
    assert os.environ["MLOPS_LOG_LEVEL"] == "info"


def test_cli_verbose_flag_turns_the_tools_back_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mlops.cli import app

    monkeypatch.setenv("MLOPS_LOG_LEVEL", "warning")
    for name in ("TQDM_DISABLE", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_LOGGING_LEVEL"):
        monkeypatch.setenv(name, "-")  # so that the teardown restores what was there
        monkeypatch.delenv(name)
    from mlops import _quiet

    _quiet.configure()  # what `import mlops` and the entry point did
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    result = CliRunner().invoke(app, ["--verbose", "env", "--json"])
    assert result.exit_code == 0, result.output
    assert os.environ["MLOPS_LOG_LEVEL"] == "info"
    for name in ("TQDM_DISABLE", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_LOGGING_LEVEL"):
        assert name not in os.environ, name  # the tools talk again, in child processes too
