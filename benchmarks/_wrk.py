"""The HTTP load generator of the benchmarks: ``wrk``, or no measurement at all.

A load generator written in Python, on the same cores as the servers, measures itself as
much as the servers (on 2 cores it reported our read path 2.5-4.6x MLflow's instead of
about 40x). So a benchmark that needs wrk and does not find it says so and exits 2;
``make bench`` installs Debian's wrk first where it can.

Example:
    >>> require_wrk("registry_server.py")  # exits 2 with a message if wrk is missing
    >>> run_wrk("http://127.0.0.1:8765/healthz", duration=5, connections=16)["p99_ms"]
    ... # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

__all__ = ["require_wrk", "run_wrk"]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
MISSING = (
    "{bench}: wrk is not installed, and this benchmark measures HTTP servers with it only "
    "(a Python load generator on the same cores would be measured instead of the servers).\n"
    "Install it: `make bench` does (apt-get install wrk, as root on Debian/Ubuntu); or "
    "`sudo apt-get install wrk`, `brew install wrk`."
)


def require_wrk(bench: str) -> str:
    """The path of ``wrk``; if it is missing, print why and exit with status 2."""
    path = shutil.which("wrk")
    if path is None:
        print(MISSING.format(bench=bench), file=sys.stderr)
        raise SystemExit(2)
    return path


def run_wrk(url: str, *, duration: float, connections: int) -> dict[str, float]:
    """Load ``url`` with wrk; requests per second, p50/p99 latency in milliseconds, and the
    machine's 1-minute load average when wrk ended (``load1``: figures from a loaded machine
    say so).

    Any non-2xx answer fails the run: a benchmark of errors is no benchmark.
    """
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, int(duration))}s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {}
    for p, value, unit in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        pct[p] = float(value) * _UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} non-2xx responses\n{out}")
    load1 = os.getloadavg()[0]
    return {"rps": rps, "p50_ms": pct["50"], "p99_ms": pct["99"], "load1": load1}
