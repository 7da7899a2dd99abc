"""What does mlops.validation cost over Great Expectations itself, and over plain pandas?

One DataFrame of 1,000,000 rows x 10 columns (numpy, fixed seed) and one suite of 10
expectations (row count, column set, unique, not-null, between, in-set, mean), run three
ways in one process:

- ``gx``: hand-written GX Core 1.x calls on its own ephemeral context (progress bars off,
  as in mlops) -- batch from a whole-dataframe batch definition, ``batch.validate(suite)``;
- ``mlops``: ``mlops.validation.validate(frame, suite, log=False)`` -- the same GX work plus
  the suite mapping, the report and its digest;
- ``pandas``: the same checks as vectorised pandas expressions (a floor, not a substitute:
  no per-expectation details, no Data Docs).

Each is warmed up once, then the three take turns (rotating order) three times; the table
shows each median, the ratio to ``gx`` and the peak RSS of the process. The last line is
one JSON object for scripts.

Run: ``.venv/bin/python benchmarks/validation.py`` (``--rows N`` for a quicker run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import numpy as np
import pandas as pd

CITIES = ["berlin", "lisbon", "oslo", "rome", "vienna"]


def make_frame(rows: int, *, seed: int = 42) -> pd.DataFrame:
    """10 columns: a unique id, six floats in [0, 1), two small ints and a city name."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id": np.arange(rows, dtype=np.int64)})
    for i in range(6):
        frame[f"x{i}"] = rng.random(rows)
    frame["cat"] = rng.integers(0, 5, rows)
    frame["label"] = rng.integers(0, 2, rows)
    frame["city"] = pd.Categorical.from_codes(rng.integers(0, 5, rows), CITIES).astype(object)
    return frame


def make_suite(frame: pd.DataFrame) -> list[dict]:
    """The 10 expectations, as mlops suite entries (``{"type", "kwargs"}``)."""
    e = [
        ("expect_table_row_count_to_be_between", {"min_value": 1, "max_value": 10 * len(frame)}),
        ("expect_table_columns_to_match_set", {"column_set": list(frame.columns)}),
        ("expect_column_values_to_be_unique", {"column": "id"}),
        ("expect_column_values_to_not_be_null", {"column": "x0"}),
        ("expect_column_values_to_not_be_null", {"column": "city"}),
        ("expect_column_values_to_be_between", {"column": "x1", "min_value": 0, "max_value": 1}),
        ("expect_column_values_to_be_between", {"column": "x2", "min_value": 0, "max_value": 1}),
        ("expect_column_values_to_be_in_set", {"column": "cat", "value_set": [0, 1, 2, 3, 4]}),
        ("expect_column_values_to_be_in_set", {"column": "city", "value_set": CITIES}),
        ("expect_column_mean_to_be_between", {"column": "x3", "min_value": 0.4, "max_value": 0.6}),
    ]
    return [{"type": t, "kwargs": k} for t, k in e]


def gx_runner(frame: pd.DataFrame, specs: list[dict]) -> Callable[[], list[bool]]:
    """Plain GX Core 1.x: own context, datasource, asset, batch definition, suite."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("bench")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
    )

    def camel(name: str) -> str:
        return "".join(part.capitalize() for part in name.split("_"))

    def run() -> list[bool]:
        suite = gx.ExpectationSuite(
            name="bench",
            expectations=[getattr(gx.expectations, camel(s["type"]))(**s["kwargs"]) for s in specs],
        )
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite)
        return [r.success for r in result.results]

    return run


def mlops_runner(frame: pd.DataFrame, specs: list[dict]) -> Callable[[], list[bool]]:
    """``mlops.validation.validate`` with logging off."""
    from mlops.validation import Suite, validate

    suite = Suite("bench", specs)

    def run() -> list[bool]:
        return [r.success for r in validate(frame, suite, log=False).results]

    return run


def pandas_runner(frame: pd.DataFrame, specs: list[dict]) -> Callable[[], list[bool]]:
    """The same ten checks as vectorised pandas expressions."""
    del specs  # the checks below mirror make_suite() by hand

    def run() -> list[bool]:
        f = frame
        return [
            1 <= len(f) <= 10 * len(f),
            set(f.columns) == set(make_suite(f)[1]["kwargs"]["column_set"]),
            bool(f["id"].is_unique),
            bool(f["x0"].notna().all()),
            bool(f["city"].notna().all()),
            bool(f["x1"].dropna().between(0, 1).all()),
            bool(f["x2"].dropna().between(0, 1).all()),
            bool(f["cat"].dropna().isin([0, 1, 2, 3, 4]).all()),
            bool(f["city"].dropna().isin(CITIES).all()),
            0.4 <= float(f["x3"].mean()) <= 0.6,
        ]

    return run


def timed(
    runners: dict[str, Callable[[], list[bool]]], repeats: int
) -> tuple[dict[str, float], dict[str, list[bool]]]:
    """Median wall time per way, and each way's outcome.

    Every way is warmed up once; then the ways take turns, in a rotating order, so that
    none of them always runs first (on a busy machine the order shows up in the times).
    """
    outcomes = {name: run() for name, run in runners.items()}
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            start = time.perf_counter()
            outcomes[name] = runners[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, outcomes


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    frame = make_frame(args.rows)
    specs = make_suite(frame)
    runners = {
        "gx": gx_runner(frame, specs),
        "mlops": mlops_runner(frame, specs),
        "pandas": pandas_runner(frame, specs),
    }
    seconds, outcomes = timed(runners, args.repeats)
    if len({tuple(o) for o in outcomes.values()}) != 1:
        raise SystemExit(f"the three ways disagree: {outcomes}")

    print(
        f"{args.rows:,} rows x {frame.shape[1]} columns, {len(specs)} expectations, "
        f"median of {args.repeats} interleaved runs (after 1 warm-up); "
        f"all {sum(outcomes['gx'])} passed"
    )
    print(f"{'way':<8}{'seconds':>10}{'x gx':>8}")
    for name, value in seconds.items():
        print(f"{name:<8}{value:>10.3f}{value / seconds['gx']:>8.2f}")
    rss = peak_rss_mb()
    print(f"peak RSS: {rss:.0f} MB")
    print(
        json.dumps(
            {
                "gx_s": round(seconds["gx"], 4),
                "mlops_s": round(seconds["mlops"], 4),
                "pandas_s": round(seconds["pandas"], 4),
                "wrapper_overhead": round(seconds["mlops"] / seconds["gx"], 3),
                "peak_rss_mb": round(rss, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
