"""The registry server over a big registry, on PostgreSQL: reads, lists, approvals, the
protected-alias sweep and the audit verification.

Seeds two fresh PostgreSQL databases: MLflow's (through its own ``SqlAlchemyStore``:
``--models`` registered models with ``--versions`` versions each, ``production`` on the
newest) and the registry's (the alias journal naming those holders, ``--models`` promoted
requests and ``--events-per-model`` hash-chained audit events per model). Then, with a
real ``mlflow server`` and the registry server (2 workers) on them:

- alias-holder reads, ours vs. MLflow's REST API, with wrk at ``--connections`` (p50/p99);
- ``GET /v1/promotions`` (a page of 50) p99 with wrk;
- approvals per second: ``--approval-models`` real sklearn versions with recorded evidence,
  each requested and approved by two people over HTTP (the second approval moves the alias);
- one full drift sweep (``reconcile_protected``) cold (first pass: every holder's identity is
  read once) and warm, counting the calls the gateway makes to MLflow;
- ``audit.verify`` over every event.

Per-model and per-event costs are extrapolated linearly to 10k models and 1M events
(``sweep_10k_s``, ``verify_1m_s``); the table shows what was measured. The last line is
JSON: ``alias_p99_ms``, ``alias_ratio_vs_mlflow``, ``list_p99_ms``, ``approvals_per_s``,
``verify_1m_s``, ``sweep_10k_s``, ``sweep_mlflow_calls`` (cold) and the measured figures.

Run from the repository root (wrk and PostgreSQL at 127.0.0.1:5432 required):
``python benchmarks/scale.py [--models 200] [--versions 3] [--duration 5]``
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._wrk import require_wrk, run_wrk  # noqa: E402

POLICY = """
version: 1
targets:
  production:
    protected: true
    checks: {smoke_test: true}
    approvals: {count: 2, roles: [approver, admin]}
"""


class CountingClient:
    """An ``MlflowClient`` that counts the calls made through it, by method."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, collections.Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return call


@contextlib.contextmanager
def quiet() -> Any:
    """Silence what MLflow prints and logs at INFO inside the block."""
    import io
    import logging

    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def seed_mlflow(url: str, models: int, versions: int) -> list[tuple[str, int]]:
    """Registered models with versions and ``production`` on the newest, via MLflow's store."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    with quiet():  # creating the store runs MLflow's migrations, logged at INFO
        store = SqlAlchemyStore(url)
    holders = []
    for i in range(models):
        name = f"scale-{i:06d}"
        store.create_registered_model(name)
        for v in range(versions):
            store.create_model_version(name, f"mlflow-artifacts:/seed/{name}/{v + 1}")
        store.set_registered_model_alias(name, "production", str(versions))
        holders.append((name, versions))
    store.engine.dispose()
    return holders


def seed_registry(url: str, holders: list[tuple[str, int]], events_per_model: int) -> int:
    """The journal of those holders, one promoted request each, and the audit events."""
    from registry_server.db.engine import Database
    from registry_server.db.models import AliasJournal, PromotionRequest
    from registry_server.services import audit

    db, now, events = Database(url), datetime.now(UTC), 0
    db.upgrade()
    for start in range(0, len(holders), 200):
        with db.session() as s:
            for name, version in holders[start : start + 200]:
                s.add(
                    PromotionRequest(
                        model=name, version=version, target="production",
                        evidence_digest="0" * 64, requester="seed", state="promoted",
                        verdict={"passed": True, "rules": []}, created_at=now, updated_at=now,
                    )
                )  # fmt: skip
                s.add(
                    AliasJournal(
                        model=name, alias="production", version=version, from_at=now,
                        action="promoted",
                    )
                )  # fmt: skip
                for j in range(events_per_model):
                    payload = {"model": name, "version": version, "seq": j}
                    audit.append(s, actor="seed", action="approval", payload=payload, at=now)
                    events += 1
    db.dispose()
    return events


def sweep(registry_url: str, mlflow_url: str, policy: Path) -> dict[str, Any]:
    """Two full sweeps (cold, warm) in this process; seconds and MLflow calls of each."""
    from mlflow.tracking import MlflowClient

    from mlops.policy import load_policy
    from registry_server.db.engine import Database
    from registry_server.mlflow_gateway import MlflowGateway
    from registry_server.services.context import ServerContext
    from registry_server.services.drift import reconcile_protected

    gateway = MlflowGateway(mlflow_url)
    counting = CountingClient(MlflowClient(mlflow_url, registry_uri=mlflow_url))
    gateway._client = counting
    ctx = ServerContext(db=Database(registry_url), gateway=gateway, policy=load_policy(policy))
    out: dict[str, Any] = {}
    for label in ("cold", "warm"):
        counting.calls.clear()
        started = time.perf_counter()
        fixed = reconcile_protected(ctx)
        out[label] = {
            "s": time.perf_counter() - started,
            "calls": sum(counting.calls.values()),
            "by_method": dict(counting.calls),
            "repairs": fixed,
        }
    ctx.db.dispose()
    return out


def verify(registry_url: str) -> tuple[float, int]:
    from registry_server.db.engine import Database
    from registry_server.services import audit

    db = Database(registry_url)
    with db.read_sessions() as s:
        started = time.perf_counter()
        result = audit.verify(s)
        seconds = time.perf_counter() - started
    db.dispose()
    if not result["ok"]:
        raise RuntimeError(f"the seeded audit chain does not verify: {result}")
    return seconds, result["count"]


def approvals(registry_url: str, mlflow_url: str, count: int) -> float:
    """Approvals per second over HTTP: ``count`` requests, two approvals each."""
    import httpx

    from benchmarks.registry_server import _register_model
    from tests.server._procs import tokens

    versions = []
    with quiet():  # MLflow prints run links and registration notices
        for i in range(count):
            versions.append((f"approve-{i}", *_register_model(mlflow_url, f"approve-{i}")))
    with httpx.Client(base_url=registry_url, timeout=60) as api:
        h = tokens(api, {"rita": "requester", "ann": "approver", "bob": "approver"})
        ids = []
        for name, version, digest in versions:
            body = {"model": name, "version": version, "target": "production",
                    "evidence_digest": digest}  # fmt: skip
            res = api.post("/v1/promotions", json=body, headers=h["rita"])
            res.raise_for_status()
            ids.append(res.json()["id"])
        started = time.perf_counter()
        for rid in ids:
            for user in ("ann", "bob"):
                api.post(f"/v1/promotions/{rid}/approve", headers=h[user]).raise_for_status()
        seconds = time.perf_counter() - started
        states = {api.get(f"/v1/promotions/{rid}").json()["state"] for rid in ids}
    if states != {"promoted"}:
        raise RuntimeError(f"approval requests ended {states}")
    return 2 * count / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--events-per-model", type=int, default=10)
    parser.add_argument("--approval-models", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    require_wrk("benchmarks/scale.py")

    from tests.conftest import fresh_pg_database, start_mlflow_server, stop_process
    from tests.server._procs import start_registry

    tmp = Path(tempfile.mkdtemp(prefix="mlops-scale-"))
    (tmp / "policy.yaml").write_text(POLICY)
    with contextlib.ExitStack() as stack:
        mlflow_db = stack.enter_context(fresh_pg_database("mlops_scale_mlflow"))
        registry_db = stack.enter_context(fresh_pg_database("mlops_scale_registry"))
        started = time.perf_counter()
        holders = seed_mlflow(mlflow_db, args.models, args.versions)
        events = seed_registry(registry_db, holders, args.events_per_model)
        seeding = time.perf_counter() - started
        mlflow = start_mlflow_server(tmp / "mlflow", backend_store_uri=mlflow_db)
        stack.callback(stop_process, mlflow.proc)
        registry = start_registry(
            tmp, database_url=registry_db, tracking_uri=mlflow.url,
            policy_file=tmp / "policy.yaml", workers=2, reconcile_interval=0,
        )  # fmt: skip
        stack.callback(registry.stop)
        name = holders[0][0]
        load = {"duration": args.duration, "connections": args.connections}
        ours = run_wrk(f"{registry.url}/v1/aliases/{name}/production", **load)
        theirs = run_wrk(
            f"{mlflow.url}/api/2.0/mlflow/registered-models/alias?name={name}&alias=production",
            **load,
        )
        listing = run_wrk(f"{registry.url}/v1/promotions?limit=50", **load)
        swept = sweep(registry_db, mlflow.url, tmp / "policy.yaml")
        verify_s, verified = verify(registry_db)
        per_s = approvals(registry.url, mlflow.url, args.approval_models)

    cold = swept["cold"]
    print(
        f"scale: {args.models} models x {args.versions} versions, {events} audit events "
        f"(seeded in {seeding:.1f}s), PostgreSQL, 2 registry workers, wrk at "
        f"{args.connections} connections for {args.duration:g}s"
    )
    rows = [
        ("alias read, ours (rps / p50 / p99 ms)", ours),
        ("alias read, mlflow (rps / p50 / p99 ms)", theirs),
        ("promotion list, 50 a page", listing),
    ]
    for label, r in rows:
        print(f"  {label:<42}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}")
    for label in ("cold", "warm"):
        s = swept[label]
        print(
            f"  sweep {label:<5} {s['s']:>8.2f}s  {s['calls']:>6} MLflow calls "
            f"{s['by_method']}  repairs {s['repairs']}"
        )
    print(f"  audit verify       {verify_s:>8.3f}s for {verified} events")
    print(f"  approvals          {per_s:>8.1f}/s over HTTP ({args.approval_models} requests)")
    print(
        json.dumps(
            {
                "alias_p99_ms": round(ours["p99_ms"], 2),
                "alias_ratio_vs_mlflow": round(ours["rps"] / theirs["rps"], 2),
                "list_p99_ms": round(listing["p99_ms"], 2),
                "approvals_per_s": round(per_s, 1),
                "verify_1m_s": round(verify_s / verified * 1_000_000, 1),
                "sweep_10k_s": round(cold["s"] / args.models * 10_000, 1),
                "sweep_mlflow_calls": cold["calls"],
                "sweep_warm_mlflow_calls": swept["warm"]["calls"],
                "models": args.models,
                "audit_events": verified,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
