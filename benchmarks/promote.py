"""What does ``mlops.promote()`` cost over doing the same steps with the tools directly?

For a small (150 rows) and a large (100,000 rows) classification dataset, one process
trains a champion and a candidate logistic regression, registers both (the champion holds
``production``) and then times, in alternating order:

- ``mlops``: ``mlops.promote(name, version, to="production", ..., submit=False)``:
  GX validation (report + Data Docs logged on the candidate's run), evaluation against
  the champion, a Bento built, served and smoke-tested, the evidence recorded and the
  policy checked locally;
- ``direct``: the same steps written against the tools: GX Core (ephemeral context, the
  same suite, result JSON + Data Docs logged with ``MlflowClient``), both models loaded
  with ``mlflow.pyfunc`` and scored with scikit-learn, ``bentoml.mlflow.import_model`` +
  ``bentoml build`` of a small service + ``bentoml serve`` + one POST, the evidence JSON
  hashed and logged, the version tagged.

The table shows each wall time and the ratio; the last line is one JSON object with
``overhead_ratio`` (mlops / direct, the worse of the two sizes). Serving dominates both.

Run: ``.venv/bin/python benchmarks/promote.py`` (``--rows 20000`` for a quicker large run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

SUITE = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "f0"}},
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "f1", "min_value": -50, "max_value": 50},
    },
    {"type": "expect_column_to_exist", "kwargs": {"column": "y"}},
]
POLICY = {
    "targets": {
        "production": {
            "checks": {
                "suites": ["bench_train"],
                "metrics": {"accuracy": {"threshold": 0.5}},
                "must_not_regress": False,
                "smoke_test": True,
            }
        }
    }
}


def make_frame(rows: int) -> Any:
    import pandas as pd
    from sklearn.datasets import make_classification

    x, y = make_classification(rows, n_features=8, n_informative=5, random_state=0)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
    frame["y"] = y
    return frame


def setup(frame: Any) -> tuple[str, int]:
    """Champion (v1, holds ``production``) and candidate (v2); returns (name, 2)."""
    from sklearn.linear_model import LogisticRegression

    import mlops

    name = f"bench-{uuid.uuid4().hex[:6]}"
    x, y = frame.drop(columns=["y"]), frame["y"]
    for c in (0.01, 1.0):
        with mlops.start_run("bench") as run:
            model = LogisticRegression(C=c, max_iter=300).fit(x, y)
            mlops.log_model(model, name="model", input_example=x.head(3))
        mv = mlops.register(run, name)
    mlops.registry.set_alias(name, "production", 1)
    return name, mv.version


def run_mlops(name: str, version: int, frame: Any) -> None:
    import mlops
    from mlops.validation import Suite

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        handle = mlops.promote(
            name,
            version,
            to="production",
            data=frame,
            eval_data=frame,
            target="y",
            suites=[Suite("bench_train", SUITE)],
            policy=POLICY,
            submit=False,
        )
    assert handle.verdict.passed, str(handle.verdict)


# --- the same steps, directly -------------------------------------------------------------
def _gx_validate(frame: Any) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas(f"d{uuid.uuid4().hex[:6]}")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    camel = lambda t: "".join(p.capitalize() for p in t.split("_"))  # noqa: E731
    suite = gx.ExpectationSuite(
        name="bench_train",
        expectations=[getattr(gx.expectations, camel(s["type"]))(**s["kwargs"]) for s in SUITE],
    )
    return batch.validate(suite)


def _data_docs(result: Any) -> str:
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))


def _scores(model: Any, x: Any, y: Any) -> dict[str, float]:
    from sklearn import metrics

    pred = model.predict(x)
    return {
        "accuracy": float(metrics.accuracy_score(y, pred)),
        "f1_macro": float(metrics.f1_score(y, pred, average="macro")),
        "precision_macro": float(metrics.precision_score(y, pred, average="macro")),
        "recall_macro": float(metrics.recall_score(y, pred, average="macro")),
    }


SERVICE = """
import bentoml, pandas as pd

@bentoml.service
class Direct:
    ref = bentoml.models.BentoModel("{tag}")

    def __init__(self):
        self.model = bentoml.mlflow.load_model(self.ref)

    @bentoml.api
    def predict(self, data: list[dict]) -> list:
        out = self.model.predict(pd.DataFrame(data))
        return [x.item() if hasattr(x, "item") else x for x in out]
"""


def _bento(name: str, version: int, uri: str, sample: Any) -> list:
    import bentoml
    import httpx

    from mlops._procs import free_port, stop_group

    tag = bentoml.mlflow.import_model(f"direct-{name}", uri).tag
    ctx = Path(tempfile.mkdtemp(prefix="direct-bento-"))
    (ctx / "service.py").write_text(textwrap.dedent(SERVICE.format(tag=tag)))
    shutil.copy(Path(uri.removeprefix("file://")) / "requirements.txt", ctx / "requirements.txt")
    (ctx / "bentofile.yaml").write_text(
        json.dumps(
            {
                "service": "service:Direct",
                "include": ["service.py"],
                "python": {"requirements_txt": "requirements.txt", "lock_packages": False},
            }
        )
    )
    res = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(ctx), "--output", "tag"],
        cwd=ctx,
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"bentoml build failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    out = res.stdout
    bento = out.strip().split("__tag__:")[-1].split()[0]
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", bento, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("bentoml serve did not become ready")
            time.sleep(0.25)
        body = {"data": sample.to_dict(orient="records")}
        return httpx.post(f"http://127.0.0.1:{port}/predict", json=body, timeout=60).json()
    finally:
        stop_group(proc, 15)


def run_direct(name: str, version: int, frame: Any) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    mv = client.get_model_version(name, str(version))
    run_id = mv.run_id or client.get_logged_model(mv.model_id).source_run_id
    result = _gx_validate(frame)
    client.log_text(run_id, json.dumps(result.to_json_dict()), "direct/validation/bench.json")
    client.log_text(run_id, _data_docs(result), "direct/validation/bench.html")
    x, y = frame.drop(columns=["y"]), frame["y"]
    champion = client.get_model_version_by_alias(name, "production")
    cand = _scores(mlflow.pyfunc.load_model(f"models:/{name}/{version}"), x, y)
    champ = _scores(mlflow.pyfunc.load_model(f"models:/{name}/{champion.version}"), x, y)
    client.log_text(run_id, json.dumps({"candidate": cand, "champion": champ}), "direct/eval.json")
    uri = client.get_model_version_download_uri(name, str(version))
    sample = x.head(5)
    served = _bento(name, version, uri, sample)
    expected = mlflow.pyfunc.load_model(uri).predict(sample).tolist()
    assert served == expected, (served, expected)
    bundle = {
        "validation": result.success,
        "metrics": {"candidate": cand, "champion": champ},
        "smoke": served == expected,
    }
    text = json.dumps(bundle, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()
    client.log_text(run_id, text, f"direct/evidence/{digest}.json")
    client.set_model_version_tag(name, str(version), "direct.evidence.digest", digest)
    assert result.success and cand["accuracy"] >= 0.5


# --- the table ------------------------------------------------------------------------------
def measure(rows: int, mlops_first: bool) -> dict[str, float]:
    frame = make_frame(rows)
    name, version = setup(frame)
    ways = [("mlops", run_mlops), ("direct", run_direct)]
    times = {}
    for label, fn in ways if mlops_first else ways[::-1]:
        started = time.perf_counter()
        fn(name, version, frame)
        times[label] = time.perf_counter() - started
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the large dataset")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-promote-"))
    os.environ.setdefault("MLOPS_HOME", str(home))
    os.environ.setdefault("MLOPS_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    os.environ.setdefault("BENTOML_HOME", str(home / "bentoml"))
    results = {}
    for i, rows in enumerate((150, args.rows)):
        results[rows] = measure(rows, mlops_first=i % 2 == 0)
    print(f"{'rows':>8} {'direct s':>10} {'mlops s':>10} {'ratio':>7}")
    ratios = []
    for rows, t in results.items():
        ratio = t["mlops"] / t["direct"]
        ratios.append(ratio)
        print(f"{rows:>8} {t['direct']:>10.2f} {t['mlops']:>10.2f} {ratio:>7.2f}")
    print(
        json.dumps(
            {
                "overhead_ratio": round(max(ratios), 3),
                "by_rows": {
                    str(r): {k: round(v, 2) for k, v in t.items()} for r, t in results.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
