"""Time ``mlops verify NAME@ALIAS`` for a model the registry server already promoted.

``benchmarks/verify.py`` calls :func:`time_verify` and prints the numbers with its own;
the goal is <= 2 s for the command, a fresh interpreter included.

Example:
    >>> time_verify("iris@production", key="registry.pub", repeat=3)   # doctest: +SKIP
    {'verify_cli_s': 1.62, 'verify_call_s': 0.21, 'verify_goal_s': 2.0, 'verify_ok': True}
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["GOAL_S", "time_verify"]

GOAL_S = 2.0
_MAIN = "import sys; from mlops.cli import main; sys.argv[0] = 'mlops'; main()"


def time_verify(
    ref: str,
    *,
    key: str | os.PathLike[str],
    repeat: int = 5,
    env: Mapping[str, str] | None = None,
) -> dict[str, float | bool]:
    """Median wall time of ``mlops verify REF --key KEY`` in fresh interpreters, and of
    ``mlops.verify(ref, key=key)`` in this (warm) process.

    ``env`` is the environment the command runs in (MLflow and the Bento store it reads;
    default: this process's). Raises ``RuntimeError`` with the command's output if
    verification fails: a failing chain has no time worth reporting.
    """
    import mlops

    cmd = [sys.executable, "-c", _MAIN, "verify", ref, "--key", str(Path(key))]
    run_env = {**os.environ, **(env or {})}
    cli: list[float] = []
    for _ in range(repeat + 1):  # the first run warms the OS file cache
        started = time.perf_counter()
        res = subprocess.run(cmd, env=run_env, capture_output=True, text=True)
        cli.append(time.perf_counter() - started)
        if res.returncode != 0:
            raise RuntimeError(f"mlops verify {ref} failed:\n{res.stdout}{res.stderr}")
    calls: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        mlops.verify(ref, key=key)
        calls.append(time.perf_counter() - started)
    cli_s = statistics.median(cli[1:])
    return {
        "verify_cli_s": round(cli_s, 3),
        "verify_call_s": round(statistics.median(calls), 3),
        "verify_goal_s": GOAL_S,
        "verify_ok": cli_s <= GOAL_S,
    }
