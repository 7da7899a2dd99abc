"""What does server-side verification cost against building the evidence it checks?

One process sets up a git + DVC repository with a local remote holding a classification
dataset (``--rows``, default 100,000 x 8 features), trains a champion (holds
``production``) and a candidate logistic regression with dataset lineage, then measures:

- ``evidence``: the evidence as ``mlops.promote`` builds it, step by step with the
  library's own functions: ``run_validation`` (GX suite, report and Data Docs logged),
  ``run_evaluation`` (candidate and champion scored), ``run_packaging`` (Bento built,
  served, smoke-tested) and ``evidence.collect`` + ``record``;
- ``verify``: one pass of the registry server's verifier on a request for that evidence
  (``registry_server.services.verifier.verify_due``): the evidence read back from MLflow,
  the data fetched by md5 from the DVC remote, the suite re-run, both models loaded from
  MLflow and re-scored, the outcome written. The server runs in-process on SQLite.

Then the request is approved, the server moves ``production`` and signs the decision, and
``mlops verify NAME@production --key registry.pub`` is timed in fresh interpreters (goal
<= 2 s; ``benchmarks/_attestation.py``) next to a warm ``mlops.verify`` call.

Imports and first-use costs are paid once before timing (a warm-up validation and
evaluation). Evidence is built ``--repeats-evidence`` times (default 1: packaging serves a
Bento), the verifier runs ``--repeats`` times (median). The ratio is verify / evidence,
measured in this run; the goal is <= 1.0 (verification skips packaging).

The last line is one JSON object; :func:`figures` returns the same dict, so other
measurements can be added to it.

Run: ``.venv/bin/python benchmarks/verify.py`` (``--rows 20000`` for a quicker run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

# this folder holds a registry_server.py benchmark: never let it shadow the package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

BIN = Path(sys.executable).parent
SUITE = {
    "name": "bench_train",
    "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "f0"}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "f1", "min_value": -50, "max_value": 50},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "y", "value_set": [0, 1]},
        },
    ],
}
POLICY = """
version: 1
targets:
  production:
    verify: [validation, evaluation]
    checks:
      suites: [bench_train]
      metrics: {accuracy: {threshold: 0.5}}
      smoke_test: true
    approvals: {count: 1}
"""


def _sh(*cmd: str, cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)


def make_repo(base: Path, rows: int) -> Path:
    """git + DVC repo with ``data/train.csv`` added, committed and pushed to a local remote."""
    import pandas as pd
    from sklearn.datasets import make_classification

    repo, remote = base / "repo", base / "dvc-remote"
    (repo / "data").mkdir(parents=True)
    _sh("git", "init", "-q", "-b", "main", cwd=repo)
    _sh("git", "config", "user.email", "bench@example.com", cwd=repo)
    _sh("git", "config", "user.name", "bench", cwd=repo)
    _sh(str(BIN / "dvc"), "init", "-q", cwd=repo)
    _sh(str(BIN / "dvc"), "remote", "add", "-d", "local", str(remote), cwd=repo)
    x, y = make_classification(rows, n_features=8, n_informative=5, random_state=0)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
    frame["y"] = y
    frame.to_csv(repo / "data" / "train.csv", index=False)
    _sh(str(BIN / "dvc"), "add", "-q", "data/train.csv", cwd=repo)
    _sh("git", "add", "-A", cwd=repo)
    _sh("git", "commit", "-q", "-m", "data", cwd=repo)
    _sh(str(BIN / "dvc"), "push", "-q", cwd=repo)
    (repo / "promotion-policy.yaml").write_text(POLICY)
    return repo


def train(repo: Path) -> tuple[str, int, Any]:
    """Champion v1 (holds ``production``) and candidate v2, both with lineage."""
    from sklearn.linear_model import LogisticRegression

    import mlops

    ds = mlops.data.version("data/train.csv", repo=repo)
    frame = mlops.data.read_dataframe(ds)
    x, y = frame.drop(columns=["y"]), frame["y"]
    name = f"bench-verify-{uuid.uuid4().hex[:6]}"
    for c in (0.01, 1.0):
        with mlops.start_run("bench-verify", datasets=[ds]) as run:
            model = LogisticRegression(C=c, max_iter=300).fit(x, y)
            mlops.log_model(model, name="model", input_example=x.head(3))
        mv = mlops.register(run, name)
    mlops.registry.set_alias(name, "production", 1)
    return name, mv.version, ds


def build_evidence(name: str, version: int, ds: Any, policy: Any) -> tuple[dict, str]:
    """The library's evidence steps, each timed; returns (seconds per step, digest)."""
    from mlops import evidence, promotion
    from mlops.validation import Suite

    suite = Suite.from_dict(SUITE)
    took: dict[str, float] = {}
    started = time.perf_counter()
    reports = promotion.run_validation(name, version, suites=[suite], data=ds)
    took["validation"] = time.perf_counter() - started
    started = time.perf_counter()
    ev = promotion.run_evaluation(
        name, version, to="production", data=ds, target="y", policy=policy
    )
    took["evaluation"] = time.perf_counter() - started
    started = time.perf_counter()
    pkg = promotion.run_packaging(name, version, data=ds, target="y")
    took["packaging"] = time.perf_counter() - started
    started = time.perf_counter()
    bundle = evidence.collect(name, version, validation=reports, evaluation=ev, package=pkg)
    digest = evidence.record(bundle)
    took["record"] = time.perf_counter() - started
    assert reports[0].success and pkg.passed, (reports[0], pkg)
    took["total"] = sum(took.values())
    return took, digest


@contextlib.contextmanager
def _server(repo: Path, tracking_uri: str) -> Iterator[tuple[Any, Any, dict[str, dict[str, str]]]]:
    """A fresh in-process registry server on SQLite (verifier driven by hand), a test
    client, and Authorization headers for a requester and an approver."""
    from fastapi.testclient import TestClient

    from registry_server.app import create_app
    from registry_server.settings import RegistrySettings
    from registry_server.tokens import create_token

    db = repo.parent / f"registry-{uuid.uuid4().hex[:6]}.db"
    settings = RegistrySettings(
        database_url=f"sqlite:///{db}", policy_path=repo / "promotion-policy.yaml",
        tracking_uri=tracking_uri, reconcile_interval=0, webhook_interval=0,
        verify_interval=0, ui=False,
    )  # fmt: skip
    app = create_app(settings)
    try:
        with app.state.ctx.db.session() as s:
            heads = {
                role: {"Authorization": f"Bearer {create_token(s, user, [role]).token}"}
                for user, role in (("ci", "requester"), ("reviewer", "approver"))
            }
        yield app, TestClient(app), heads
    finally:
        app.state.ctx.db.dispose()


def _request(client: Any, heads: dict, name: str, version: int, digest: str) -> int:
    body = {"model": name, "version": version, "target": "production", "evidence_digest": digest}
    res = client.post("/v1/promotions", json=body, headers=heads["requester"])
    assert res.json()["state"] == "verifying", res.json()
    return res.json()["id"]


def verify_once(repo: Path, tracking_uri: str, name: str, version: int, digest: str) -> float:
    """One verifier pass on a fresh request (in-process server on SQLite); seconds."""
    from registry_server.services.verifier import verify_due

    with _server(repo, tracking_uri) as (app, client, heads):
        rid = _request(client, heads, name, version, digest)
        started = time.perf_counter()
        done = verify_due(app.state.ctx)
        took = time.perf_counter() - started
        state = client.get(f"/v1/promotions/{rid}").json()
        assert done == 1 and state["state"] == "pending", state
        return took


def promote_and_time_verify(
    repo: Path, tracking_uri: str, name: str, version: int, digest: str, repeats: int
) -> dict[str, Any]:
    """Verify, approve and move the alias (the server signs the decision), then time
    ``mlops verify NAME@production`` offline with only the public key."""
    from benchmarks._attestation import time_verify
    from registry_server.services.verifier import verify_due

    key = repo.parent / "registry.pub"
    with _server(repo, tracking_uri) as (app, client, heads):
        rid = _request(client, heads, name, version, digest)
        verify_due(app.state.ctx)
        res = client.post(f"/v1/promotions/{rid}/approve", json={}, headers=heads["approver"])
        assert res.json()["state"] == "promoted", res.json()
        key.write_text(client.get("/v1/keys", headers=heads["requester"]).json()["public_key"])
    return time_verify(f"{name}@production", key=key, repeat=repeats)


def figures(rows: int, repeats: int, repeats_evidence: int) -> dict[str, Any]:
    """Set up, warm up, measure; the figures as one dict (extend it with other timings)."""
    base = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    os.environ.update(
        MLOPS_HOME=str(base / "home"),
        MLOPS_TRACKING_URI=f"sqlite:///{base / 'home' / 'mlflow.db'}",
        BENTOML_HOME=str(base / "bentoml"),
    )
    repo = make_repo(base, rows)
    os.environ["MLOPS_DVC_ROOT"] = str(repo)
    os.chdir(repo)
    from mlops.policy import load_policy

    policy = load_policy(repo / "promotion-policy.yaml")
    name, version, ds = train(repo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlops import promotion
        from mlops.validation import Suite

        promotion.run_validation(name, version, suites=[Suite.from_dict(SUITE)], data=ds)
        promotion.run_evaluation(name, version, to="production", data=ds, target="y", policy=policy)
        builds = [build_evidence(name, version, ds, policy) for _ in range(repeats_evidence)]
        digest = builds[-1][1]
        verify = [
            verify_once(repo, os.environ["MLOPS_TRACKING_URI"], name, version, digest)
            for _ in range(repeats)
        ]
        signed = promote_and_time_verify(
            repo, os.environ["MLOPS_TRACKING_URI"], name, version, digest, repeats
        )
    steps = {k: statistics.median(b[0][k] for b in builds) for k in builds[0][0]}
    median = statistics.median(verify)
    return {
        "benchmark": "verify",
        "rows": rows,
        "evidence_s": {k: round(v, 3) for k, v in steps.items()},
        "verify_s": round(median, 3),
        "verify_runs_s": [round(v, 3) for v in verify],
        "ratio_verify_to_evidence": round(median / steps["total"], 3),
        "ratio_verify_to_validation_and_evaluation": round(
            median / (steps["validation"] + steps["evaluation"]), 3
        ),
        "goal_ratio": 1.0,
        **signed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repeats-evidence", type=int, default=1)
    args = parser.parse_args()
    figs = figures(args.rows, args.repeats, args.repeats_evidence)
    ev = figs["evidence_s"]
    print(f"rows: {figs['rows']}")
    print(f"{'step':<34} {'seconds':>9}")
    for step in ("validation", "evaluation", "packaging", "record"):
        print(f"{'evidence: ' + step:<34} {ev[step]:>9.2f}")
    print(f"{'evidence: total':<34} {ev['total']:>9.2f}")
    print(f"{'verify (server, median)':<34} {figs['verify_s']:>9.2f}")
    print(f"{'ratio verify / evidence':<34} {figs['ratio_verify_to_evidence']:>9.2f}")
    print(f"{'ratio verify / (valid. + eval.)':<34} "
          f"{figs['ratio_verify_to_validation_and_evaluation']:>9.2f}")  # fmt: skip
    print(f"{'mlops verify NAME@ALIAS (command)':<34} {figs['verify_cli_s']:>9.2f}")
    print(f"{'mlops.verify() (warm call)':<34} {figs['verify_call_s']:>9.2f}")
    print(json.dumps(figs))


if __name__ == "__main__":
    main()
