"""Alias reads: our registry server vs. MLflow's REST API, on the same machine.

Starts a real ``mlflow server`` (SQLite) and our server (uvicorn, SQLite, 2 workers),
registers one sklearn model, records its evidence, promotes it to ``production`` through
our API (so our journal holds the alias), then loads both read endpoints for a fixed
duration with the same number of connections:

- ours:   ``GET /v1/aliases/{model}/production``
- MLflow: ``GET /api/2.0/mlflow/registered-models/alias?name={model}&alias=production``

The load generator is ``wrk`` (``make bench`` installs it where it can); without it the
benchmark says so and exits 2 rather than measure a Python load generator on the same
cores. Prints a table, then one JSON line::

    {"ours_rps", "mlflow_rps", "ratio", "ours_p99_ms", "connections"}

Run: ``python benchmarks/registry_server.py [--duration 10] [--connections 16]``
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._wrk import require_wrk, run_wrk  # noqa: E402
from mlops._procs import free_port, stop_group  # noqa: E402

BIN = Path(sys.executable).parent
POLICY = """
version: 1
targets:
  production:
    protected: true
    checks: {smoke_test: true}
    approvals: {count: 2, roles: [approver, admin]}
"""


def _wait(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).is_success:
                return
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    out = open(log, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _register_model(tracking: str, name: str) -> tuple[int, str]:
    """Log and register a small sklearn model; record evidence; return (version, digest)."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(tracking)
    x, y = load_iris(return_X_y=True, as_frame=True)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(LogisticRegression(max_iter=300).fit(x, y), name="model")
    mv = mlflow.register_model(info.model_uri, name)
    version = int(mv.version)
    bundle = {
        "schema": 1,
        "model": {"name": name, "version": version, "run_id": run.info.run_id},
        "lineage": {"git_commit": None, "datasets": []},
        "validation": [],
        "evaluation": None,
        "package": {
            "bento_tag": f"{name}:bench",
            "model_tag": f"{name}:bench",
            "smoke": {"passed": True, "rows": 3, "mismatches": 0, "error": None, "seconds": 0.1},
            "parity": {"passed": True, "missing": [], "mismatched": []},
            "passed": True,
        },
    }
    digest = hashlib.sha256(_canonical(bundle)).hexdigest()
    path = f"mlops/evidence/{digest}.json"
    client = MlflowClient(tracking)
    client.log_text(run.info.run_id, _canonical(bundle).decode(), path)
    client.set_model_version_tag(name, str(version), "mlops.evidence.digest", digest)
    client.set_model_version_tag(name, str(version), "mlops.evidence.path", path)
    return version, digest


def _promote(base: str, admin: str, name: str, version: int, digest: str) -> None:
    api = httpx.Client(base_url=base, timeout=60)

    def token(user: str, role: str) -> dict[str, str]:
        res = api.post(
            "/v1/tokens",
            json={"user": user, "roles": [role]},
            headers={"Authorization": f"Bearer {admin}"},
        )
        res.raise_for_status()
        return {"Authorization": f"Bearer {res.json()['token']}"}

    req = api.post(
        "/v1/promotions",
        headers=token("rita", "requester"),
        json={"model": name, "version": version, "target": "production", "evidence_digest": digest},
    )
    req.raise_for_status()
    rid = req.json()["id"]
    api.post(f"/v1/promotions/{rid}/approve", headers=token("ann", "approver")).raise_for_status()
    done = api.post(f"/v1/promotions/{rid}/approve", headers=token("bob", "approver"))
    done.raise_for_status()
    if done.json()["state"] != "promoted":
        raise RuntimeError(f"promotion did not complete: {done.json()}")


def _measure(url: str, duration: float, connections: int) -> dict[str, float]:
    httpx.get(url, timeout=10).raise_for_status()
    return run_wrk(url, duration=duration, connections=connections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    require_wrk("benchmarks/registry_server.py")

    tmp = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    # MLflow's job runner (a dozen huey workers) would compete with both servers for the cores.
    env = {
        **os.environ,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    procs: list[subprocess.Popen] = []
    try:
        mport, rport, admin, name = free_port(), free_port(), "bench-admin-token", "bench-iris"
        mlflow_url, ours_url = f"http://127.0.0.1:{mport}", f"http://127.0.0.1:{rport}"
        procs.append(
            _start(
                [
                    str(BIN / "mlflow"),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mport),
                    "--workers",
                    str(args.workers),
                    "--backend-store-uri",
                    f"sqlite:///{tmp / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(tmp / "artifacts"),
                ],
                env,
                tmp / "mlflow.log",
            )
        )
        _wait(f"{mlflow_url}/health", procs[-1])
        version, digest = _register_model(mlflow_url, name)

        (tmp / "policy.yaml").write_text(POLICY)
        renv = {
            **env,
            "MLOPS_HOME": str(tmp),
            "MLOPS_REGISTRY_DATABASE_URL": f"sqlite:///{tmp / 'registry.db'}",
            "MLOPS_REGISTRY_POLICY_PATH": str(tmp / "policy.yaml"),
            "MLOPS_REGISTRY_TRACKING_URI": mlflow_url,
            "MLOPS_REGISTRY_PORT": str(rport),
            "MLOPS_REGISTRY_WORKERS": str(args.workers),
            "MLOPS_REGISTRY_ADMIN_TOKEN": admin,
            "MLOPS_REGISTRY_RECONCILE_INTERVAL": "0",
        }
        procs.append(
            _start(
                [sys.executable, "-c", "import registry_server; registry_server.run()"],
                renv,
                tmp / "registry.log",
            )
        )
        _wait(f"{ours_url}/readyz", procs[-1])
        _promote(ours_url, admin, name, version, digest)

        ours = _measure(f"{ours_url}/v1/aliases/{name}/production", args.duration, args.connections)
        theirs = _measure(
            f"{mlflow_url}/api/2.0/mlflow/registered-models/alias?name={name}&alias=production",
            args.duration,
            args.connections,
        )
    finally:
        for proc in reversed(procs):
            stop_group(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"alias read, {args.connections} connections, {args.duration:g}s each, "
        f"{args.workers} workers each, load generator: wrk"
    )
    print(f"{'server':<10}{'rps':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for label, r in (("ours", ours), ("mlflow", theirs)):
        print(f"{label:<10}{r['rps']:>12.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}")
    print(
        json.dumps(
            {
                "ours_rps": round(ours["rps"], 1),
                "mlflow_rps": round(theirs["rps"], 1),
                "ratio": round(ours["rps"] / theirs["rps"], 2),
                "ours_p99_ms": round(ours["p99_ms"], 2),
                "connections": args.connections,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
