"""Benchmarks never measure their own load generator: without wrk they say so and fail,
and ``make bench`` installs wrk before it runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTTP_BENCHMARKS = ["registry_server.py", "scale.py"]


@pytest.mark.parametrize("bench", HTTP_BENCHMARKS)
def test_an_http_benchmark_without_wrk_says_so_and_exits_non_zero(
    bench: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no wrk (nor anything else) on PATH
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / bench), "--duration", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert f"benchmarks/{bench}: wrk is not installed" in res.stderr
    assert "make bench" in res.stderr and "apt-get install wrk" in res.stderr
    assert res.stdout == ""  # no table, no JSON line: nothing measured


def test_make_bench_installs_wrk_before_running_the_benchmarks() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    plan = subprocess.run(
        [make, "-n", "bench"],  # -n: print the commands, run nothing
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    install = plan.index("apt-get install -y -qq wrk")
    assert "command -v wrk" in plan[:install] and 'id -u)" = 0' in plan[:install]
    loop = plan.index("for b in benchmarks/[!_]*.py")
    assert install < loop and "|| exit 1" in plan[loop:]
