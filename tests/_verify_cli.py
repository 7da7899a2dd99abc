"""``mlops verify`` as a command in a fresh interpreter, telling whether MLflow was imported.

The command runs under a small wrapper that writes, at exit, whether ``mlflow`` is in
``sys.modules``: the fast MLflow reader must leave it out on SQLite and HTTP stores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

_MARK = "mlflow imported at exit:"
_WRAPPER = f"""
import atexit, sys
atexit.register(lambda: print({_MARK!r}, "mlflow" in sys.modules, file=sys.stderr))
from mlops.cli import main
sys.argv[0] = "mlops"
main()
"""


def run_verify(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], bool]:
    """``mlops verify ARGS`` in a fresh interpreter: the finished process, and whether it
    imported MLflow. ``env`` is added to this process's environment."""
    res = subprocess.run(
        [sys.executable, "-c", _WRAPPER, "verify", *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    marks = [line for line in res.stderr.splitlines() if line.startswith(_MARK)]
    assert len(marks) == 1, res.stdout + res.stderr
    return res, marks[0].removeprefix(_MARK).strip() == "True"
