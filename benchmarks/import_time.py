"""Wall time of `import mlops` vs `import mlflow`, each in a fresh interpreter.

Prints a table of medians and, as the last line, one JSON object:
``{"mlops_import_s": ..., "mlflow_import_s": ..., "ratio": ...}`` (target ratio <= 0.2).

Usage: python benchmarks/import_time.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

_PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def time_import(module: str, repeat: int) -> list[float]:
    """Seconds to import ``module`` in ``repeat`` fresh interpreters (after one warm-up)."""
    cmd = [sys.executable, "-c", _PROBE.format(module=module)]
    subprocess.run(cmd, check=True, capture_output=True)  # warm the OS file cache
    return [
        float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        for _ in range(repeat)
    ]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="fresh interpreters per module")
    args = parser.parse_args(argv)
    results = {m: time_import(m, args.repeat) for m in ("mlops", "mlflow")}
    print(f"{'module':<8} {'median s':>9} {'min s':>8} {'max s':>8}  (n={args.repeat})")
    for module, times in results.items():
        print(f"{module:<8} {statistics.median(times):>9.4f} {min(times):>8.4f} {max(times):>8.4f}")
    mlops_s = statistics.median(results["mlops"])
    mlflow_s = statistics.median(results["mlflow"])
    ratio = mlops_s / mlflow_s
    print(f"ratio mlops/mlflow = {ratio:.3f} (target <= 0.2)")
    summary = {
        "mlops_import_s": round(mlops_s, 4),
        "mlflow_import_s": round(mlflow_s, 4),
        "ratio": round(ratio, 4),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
