"""Drift window of protected aliases: seconds from a direct MLflow alias write to its revert.

Against a real ``mlflow server`` (SQLite store, loopback) and a real registry server process
(SQLite), a version is promoted to ``production`` through the gate; then, ``--trials``
times, ``production`` is moved to another version directly in MLflow and the time until
MLflow shows the approved version again is measured (polled every 20 ms). Two set-ups, each
with a fresh MLflow server:

1. ``webhooks``: the registry subscribes to MLflow's ``model_version_alias`` webhooks
   (signed; ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http`` and ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS``
   let MLflow call a loopback URL) and the sweep keeps its ``--interval``;
2. ``sweep``: no webhooks, the sweep alone every ``--interval`` seconds (an embedded
   SQLite MLflow store, which sends no webhooks, always works this way).

Prints a table and, as the last line, one JSON object with ``drift_window_s`` (the median
with webhooks) and both figures.

Run from the repository root: ``python benchmarks/drift.py [--trials 5] [--interval 30]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECRET = "drift-benchmark-webhook-secret"


def _promote(api, name: str, version: int, digest: str) -> None:  # type: ignore[no-untyped-def]
    from tests.server._procs import tokens

    h = tokens(api, {"rita": "requester", "ann": "approver", "bob": "approver"})
    body = {"model": name, "version": version, "target": "production", "evidence_digest": digest}
    rid = api.post("/v1/promotions", json=body, headers=h["rita"]).json()["id"]
    api.post(f"/v1/promotions/{rid}/approve", headers=h["ann"])
    state = api.post(f"/v1/promotions/{rid}/approve", headers=h["bob"]).json()["state"]
    if state != "promoted":
        raise RuntimeError(f"promotion of {name} v{version} ended {state!r}")


def _window(client, name: str, approved: int, other: int, timeout: float) -> float:  # type: ignore[no-untyped-def]
    """Move ``production`` to ``other`` directly in MLflow; seconds until it is back."""
    client.set_registered_model_alias(name, "production", str(other))
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if int(client.get_model_version_by_alias(name, "production").version) == approved:
            return time.monotonic() - start
        time.sleep(0.02)
    raise TimeoutError(f"{name}@production not reverted within {timeout}s")


def _measure(mode: str, work: Path, policy: Path, trials: int, interval: float) -> list[float]:
    from tests.conftest import free_port, start_mlflow_server, stop_process
    from tests.server._procs import start_registry, wait_until
    from tests.server.conftest import log_model

    base = work / mode
    mlflow = start_mlflow_server(base / "mlflow")
    registry = None
    try:
        model = log_model(mlflow.url)
        name = f"drift-{uuid.uuid4().hex[:8]}"
        approved = model.register(name)
        digest = model.record(name, approved)
        other = model.register(name)
        port = free_port()
        hooks = {}
        if mode == "webhooks":
            hooks = {
                "mlflow_webhook_url": f"http://127.0.0.1:{port}/v1/mlflow/webhook",
                "mlflow_webhook_secret": SECRET,
            }
        registry = start_registry(
            base,
            database_url=f"sqlite:///{base / 'registry.db'}",
            tracking_uri=mlflow.url,
            policy_file=policy,
            port=port,
            reconcile_interval=interval,
            **hooks,
        )
        with registry.api() as api:
            if hooks:
                wait_until(lambda: api.get("/readyz").json()["mlflow_webhook"]["subscribed"], 60)
            _promote(api, name, approved, digest)
        client = model.client()
        windows = []
        for _ in range(trials):
            windows.append(_window(client, name, approved, other, timeout=interval * 3 + 30))
            time.sleep(0.5)  # let the webhook of the server's own restore come and go
        return windows
    finally:
        if registry is not None:
            registry.stop()
        stop_process(mlflow.proc)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="alias writes per set-up")
    parser.add_argument(
        "--interval", type=float, default=30.0, help="sweep interval in seconds (server default)"
    )
    args = parser.parse_args(argv)

    # MLflow delivers webhooks only to https and public addresses unless told otherwise
    os.environ["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"] = "http,https"
    os.environ["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"] = "true"
    from tests.server.conftest import POLICY

    work = Path(tempfile.mkdtemp(prefix="mlops-drift-"))
    policy = work / "promotion-policy.yaml"
    policy.write_text(POLICY)
    results = {
        mode: _measure(mode, work, policy, args.trials, args.interval)
        for mode in ("webhooks", "sweep")
    }
    head = f"{'set-up':<9} {'interval s':>10} {'trials':>6} {'min s':>7} {'median s':>8}"
    print(f"{head} {'max s':>7}")
    for mode, w in results.items():
        print(
            f"{mode:<9} {args.interval:>10g} {len(w):>6} {min(w):>7.2f} "
            f"{statistics.median(w):>8.2f} {max(w):>7.2f}"
        )
    summary = {
        "drift_window_s": round(statistics.median(results["webhooks"]), 3),
        "webhook_window_s": {
            "median": round(statistics.median(results["webhooks"]), 3),
            "max": round(max(results["webhooks"]), 3),
        },
        "sweep_window_s": {
            "median": round(statistics.median(results["sweep"]), 3),
            "max": round(max(results["sweep"]), 3),
        },
        "sweep_interval_s": args.interval,
        "trials": args.trials,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
