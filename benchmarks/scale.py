"""The registry server over a big registry, on PostgreSQL: reads, lists, approvals, the
protected-alias sweep and the audit verification.

Seeds two fresh PostgreSQL databases (:mod:`benchmarks._scale_seed`): MLflow's
(``--models`` registered models with ``--versions`` versions each, ``production`` on the
newest) and the registry's (the alias journal naming those holders, ``--requests-per-model``
requests per model plus a pending one on every tenth, and ``--events`` hash-chained audit
events, 100 per model by default). Then, with a real ``mlflow server`` and the registry
server (``--workers``, 3; MLflow's own ``--mlflow-workers``, 1) on them:

- alias-holder reads, ours vs. MLflow's REST API, with wrk at ``--connections`` (p50/p99);
- the pending list (``GET /v1/promotions?state=pending``, a page of 50) and one request's
  view, p99 with wrk, each after one unmeasured second of the same load;
- one full drift sweep (``reconcile_protected``) cold (a fresh process: every holder's
  identity is verified) and warm, counting the requests MLflow answered (its access log);
- ``audit.verify`` over every event;
- approvals: ``--approval-models`` real versions with recorded evidence, each requested,
  then approved by two people at once from ``--approval-threads`` clients (the second
  approval moves the alias); approvals per second, p50/p99, the double moves found
  afterwards (a request with two ``promoted`` events or journal rows; must be 0), the
  requests MLflow answered per promoted request (counted in its access log, by path) and
  the CPU milliseconds the registry server, MLflow's server and PostgreSQL each spent per
  promoted request (``--approvals-only`` runs only this part).

Sweep and verify are scaled linearly to 10k models and 1M events (``sweep_10k_s``,
``verify_1m_s``); at ``--models 10000`` they are what was measured. The last line is
JSON: ``alias_p99_ms``, ``alias_ratio_vs_mlflow``, ``list_p99_ms``, ``request_p99_ms``,
``approvals_per_s``, ``approval_p99_ms``, ``approval_mlflow_calls_per_promotion``,
``approval_cpu_ms_per_promotion``,
``double_moves``, ``verify_1m_s``, ``sweep_10k_s``, ``sweep_mlflow_calls`` (cold) and the
measured figures.

Run from the repository root (wrk and PostgreSQL at 127.0.0.1:5432 required):
``python benchmarks/scale.py [--models 500] [--duration 5]``; ``--models 10000`` is the
full run (under 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._scale_seed import quiet, seed_mlflow, seed_registry  # noqa: E402
from benchmarks._wrk import require_wrk, run_wrk  # noqa: E402

POLICY = """
version: 1
targets:
  production:
    protected: true
    checks: {smoke_test: true}
    approvals: {count: 2, roles: [approver, admin]}
"""


def warm_wrk(url: str, **load: Any) -> dict[str, float]:
    """:func:`run_wrk` after one unmeasured second of the same load: each worker's first
    answers open its database connections and prepare its statements, which a server in
    use has long done (and which would otherwise be most of a 5-second run's p99)."""
    run_wrk(url, duration=1, connections=load["connections"])
    return run_wrk(url, **load)


def sweep(registry_url: str, mlflow_url: str, policy: Path, mlflow_log: Path) -> dict[str, Any]:
    """Two full sweeps (cold, warm) in this process; seconds and MLflow calls of each (the
    requests MLflow answered, by path, from its access log)."""
    from mlops.policy import load_policy
    from registry_server.db.engine import Database
    from registry_server.mlflow_gateway import MlflowGateway
    from registry_server.services.context import ServerContext
    from registry_server.services.drift import reconcile_protected
    from tests.conftest import mlflow_requests

    gateway = MlflowGateway(mlflow_url)
    gateway.preload()
    ctx = ServerContext(db=Database(registry_url), gateway=gateway, policy=load_policy(policy))
    out: dict[str, Any] = {}
    for label in ("cold", "warm"):
        before = mlflow_requests(mlflow_log)
        started, cpu = time.perf_counter(), time.process_time()
        fixed = reconcile_protected(ctx)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        calls = mlflow_requests(mlflow_log) - before
        out[label] = {
            "s": seconds,
            "cpu_s": cpu,  # this process's share: the rest is MLflow's
            "calls": sum(calls.values()),
            "by_method": dict(calls),
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


def _register_many(mlflow_url: str, count: int) -> list[tuple[str, int, str]]:
    """``count`` registered models of one logged sklearn model, each with its own evidence."""
    import hashlib

    import mlflow
    from mlflow.tracking import MlflowClient

    from benchmarks.registry_server import _canonical, _register_model

    out = []
    with quiet():  # MLflow prints run links and registration notices
        version, _ = _register_model(mlflow_url, "approve-0")
        client = MlflowClient(mlflow_url)
        first = client.get_model_version("approve-0", str(version))
        bundle = json.loads(
            Path(client.download_artifacts(first.run_id, first.tags["mlops.evidence.path"]))
            .read_text()
        )  # fmt: skip
        for i in range(count):
            name = f"approve-{i + 1}"
            mv = mlflow.register_model(first.source, name)
            bundle["model"] = {"name": name, "version": int(mv.version), "run_id": first.run_id}
            data = _canonical(bundle)
            digest = hashlib.sha256(data).hexdigest()
            path = f"mlops/evidence/{digest}.json"
            client.log_text(first.run_id, data.decode(), path)
            client.set_model_version_tag(name, mv.version, "mlops.evidence.digest", digest)
            client.set_model_version_tag(name, mv.version, "mlops.evidence.path", path)
            out.append((name, int(mv.version), digest))
    return out


def _by_kind(calls: collections.Counter) -> list[tuple[str, int]]:
    """``calls`` by path with each artifact file named by its kind: ``artifacts/<run or
    model>/.../evidence/<digest>.json`` counts as ``artifacts/.../evidence/*.json``."""
    kinds: collections.Counter = collections.Counter()
    for path, n in calls.items():
        if path.startswith("artifacts/"):
            path = re.sub(r"[0-9a-f]{32,64}", "*", path)
            path = re.sub(r"^artifacts/.*?/artifacts/", "artifacts/.../", path)
        kinds[path] += n
    return kinds.most_common()


def server_cpu(registry_pid: int, mlflow_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the registry server's and MLflow's
    process trees and by PostgreSQL's processes."""
    import psutil

    def tree(pid: int) -> list[psutil.Process]:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]

    postgres = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
    groups = {"registry": tree(registry_pid), "mlflow": tree(mlflow_pid), "postgres": postgres}
    out = {}
    for group, procs in groups.items():
        out[group] = 0.0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                out[group] += times.user + times.system
    return out


def approvals(
    registry_url: str,
    mlflow_url: str,
    count: int,
    threads: int,
    mlflow_log: Path,
    cpu: Callable[[], dict[str, float]],
) -> dict[str, Any]:
    """Approvals per second over HTTP from ``threads`` clients: ``count`` requests, two
    approvals each (the second reaches quorum and moves the alias); p50/p99 latency, the
    MLflow requests the approvals and moves of one request cost (from MLflow's log, by
    path) and the CPU milliseconds each server spent per promoted request (``cpu``)."""
    import concurrent.futures

    import httpx

    from tests.conftest import mlflow_requests
    from tests.server._procs import tokens

    versions = _register_many(mlflow_url, count)
    with httpx.Client(base_url=registry_url, timeout=60) as api:
        h = tokens(api, {"rita": "requester", "ann": "approver", "bob": "approver"})
        ids = []
        for name, version, digest in versions:
            body = {"model": name, "version": version, "target": "production",
                    "evidence_digest": digest}  # fmt: skip
            res = api.post("/v1/promotions", json=body, headers=h["rita"])
            res.raise_for_status()
            ids.append(res.json()["id"])

    local = threading.local()

    def approve(job: tuple[int, str]) -> float:
        if not hasattr(local, "api"):
            local.api = httpx.Client(base_url=registry_url, timeout=60)
        started = time.perf_counter()
        local.api.post(f"/v1/promotions/{job[0]}/approve", headers=h[job[1]]).raise_for_status()
        return time.perf_counter() - started

    # each request's two approvals go in at once, from different clients
    jobs = [(rid, user) for rid in ids for user in ("ann", "bob")]
    before, cpu_before = mlflow_requests(mlflow_log), cpu()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        latencies = sorted(pool.map(approve, jobs))
        seconds = time.perf_counter() - started
    cpu_after = cpu()
    with httpx.Client(base_url=registry_url, timeout=60) as api:
        states = {api.get(f"/v1/promotions/{rid}").json()["state"] for rid in ids}
    if states != {"promoted"}:
        raise RuntimeError(f"approval requests ended {states}")
    calls = mlflow_requests(mlflow_log) - before
    return {
        "mlflow_calls_per_promotion": sum(calls.values()) / len(ids),
        "mlflow_calls_by_path": {p: round(n / len(ids), 2) for p, n in _by_kind(calls)},
        "cpu_ms_per_promotion": {
            group: round((cpu_after[group] - cpu_before[group]) / len(ids) * 1000, 1)
            for group in cpu_after
        },
        "per_s": len(jobs) / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def double_moves(registry_db: str) -> int:
    """Requests with more than one ``promoted`` event or journal row (must be 0)."""
    import sqlalchemy as sa

    engine = sa.create_engine(registry_db)
    with engine.connect() as conn:
        events = conn.execute(
            sa.text(
                "SELECT count(*) FROM (SELECT payload::json->>'request_id' AS r FROM audit_events "
                "WHERE action = 'promoted' GROUP BY 1 HAVING count(*) > 1) d"
            )
        ).scalar_one()
        rows = conn.execute(
            sa.text(
                "SELECT count(*) FROM (SELECT request_id FROM alias_journal WHERE request_id "
                "IS NOT NULL GROUP BY 1 HAVING count(*) > 1) d"
            )
        ).scalar_one()
    engine.dispose()
    return events + rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--requests-per-model", type=int, default=10)
    parser.add_argument("--events", type=int, default=None, help="default: 100 per model")
    parser.add_argument("--approval-models", type=int, default=60)
    parser.add_argument("--approval-threads", type=int, default=8)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--mlflow-workers", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--reads-only",
        action="store_true",
        help="only the wrk reads (alias, list, one request): no sweep, verify or approvals",
    )
    parser.add_argument(
        "--approvals-only",
        action="store_true",
        help="only the approvals (with their MLflow requests and CPU): no reads, sweep or verify",
    )
    args = parser.parse_args(argv)
    require_wrk("benchmarks/scale.py")
    events = args.events if args.events is not None else 100 * args.models

    from tests.conftest import fresh_pg_database, start_mlflow_server, stop_process
    from tests.server._procs import start_registry

    tmp = Path(tempfile.mkdtemp(prefix="mlops-scale-"))
    (tmp / "policy.yaml").write_text(POLICY)
    with contextlib.ExitStack() as stack:
        mlflow_db = stack.enter_context(fresh_pg_database("mlops_scale_mlflow"))
        registry_db = stack.enter_context(fresh_pg_database("mlops_scale_registry"))
        started = time.perf_counter()
        holders = seed_mlflow(mlflow_db, args.models, args.versions)
        seeded = seed_registry(
            registry_db, holders, requests_per_model=args.requests_per_model, events=events
        )
        seeding = time.perf_counter() - started
        mlflow = start_mlflow_server(
            tmp / "mlflow", backend_store_uri=mlflow_db, workers=args.mlflow_workers
        )
        stack.callback(stop_process, mlflow.proc)
        mlflow_log = mlflow.log
        registry = start_registry(
            tmp, database_url=registry_db, tracking_uri=mlflow.url,
            policy_file=tmp / "policy.yaml", workers=args.workers, reconcile_interval=0,
            log_level="warning",  # the default: no access log line per request
        )  # fmt: skip
        stack.callback(registry.stop)

        def approve_all() -> dict[str, Any]:
            return approvals(
                registry.url, mlflow.url, args.approval_models, args.approval_threads,
                mlflow_log, lambda: server_cpu(registry.proc.pid, mlflow.proc.pid),
            )  # fmt: skip

        if args.approvals_only:
            print(json.dumps({**approve_all(), "double_moves": double_moves(registry_db)}))
            return 0
        name = holders[len(holders) // 2][0]
        load = {"duration": args.duration, "connections": args.connections}
        ours = run_wrk(f"{registry.url}/v1/aliases/{name}/production", **load)
        theirs = run_wrk(
            f"{mlflow.url}/api/2.0/mlflow/registered-models/alias?name={name}&alias=production",
            **load,
        )
        listing = warm_wrk(f"{registry.url}/v1/promotions?state=pending&limit=50", **load)
        one = warm_wrk(f"{registry.url}/v1/promotions/{seeded['requests'] // 2}", **load)
        if args.reads_only:
            reads = {"alias": ours, "alias_mlflow": theirs, "list": listing, "one": one}
            print(json.dumps({k: {m: round(v, 2) for m, v in r.items()} for k, r in reads.items()}))
            return 0
        swept = sweep(registry_db, mlflow.url, tmp / "policy.yaml", mlflow_log)
        verify_s, verified = verify(registry_db)
        approved = approve_all()
        doubles = double_moves(registry_db)
    report(args, seeded, seeding, [("alias read, ours", ours), ("alias read, mlflow", theirs),
           ("pending list, 50 a page", listing), ("one request", one)], swept,
           (verify_s, verified), approved, doubles)  # fmt: skip
    cold = swept["cold"]
    print(
        json.dumps(
            {
                "alias_p99_ms": round(ours["p99_ms"], 2),
                "alias_ratio_vs_mlflow": round(ours["rps"] / theirs["rps"], 2),
                "list_p99_ms": round(listing["p99_ms"], 2),
                "request_p99_ms": round(one["p99_ms"], 2),
                "alias_p50_ms": round(ours["p50_ms"], 2),
                "load1": [round(r["load1"], 2) for r in (ours, listing, one)],
                "approvals_per_s": round(approved["per_s"], 1),
                "approval_p99_ms": round(approved["p99_ms"], 1),
                "approval_mlflow_calls_per_promotion": round(
                    approved["mlflow_calls_per_promotion"], 1
                ),
                "approval_cpu_ms_per_promotion": approved["cpu_ms_per_promotion"],
                "double_moves": doubles,
                "verify_1m_s": round(verify_s / verified * 1_000_000, 2),
                "sweep_10k_s": round(cold["s"] / args.models * 10_000, 2),
                "sweep_mlflow_calls": cold["calls"],
                "sweep_warm_mlflow_calls": swept["warm"]["calls"],
                "models": args.models,
                "mlflow_workers": args.mlflow_workers,
                "audit_events": verified,
                "sweep_s": round(cold["s"], 2),
                "sweep_cpu_s": round(cold["cpu_s"], 2),
                "verify_s": round(verify_s, 2),
            }
        )
    )
    return 0 if doubles == 0 else 1


def report(args: Any, seeded: dict, seeding: float, wrk: list, swept: dict, verified: tuple,
           approved: dict, doubles: int) -> None:  # fmt: skip
    """The human-readable table above the JSON line."""
    print(
        f"scale: {args.models} models x {args.versions} versions, {seeded['requests']} requests "
        f"({seeded['pending']} pending), {seeded['audit_events']} audit events (seeded in "
        f"{seeding:.1f}s), PostgreSQL, {args.workers} registry workers, "
        f"{args.mlflow_workers} MLflow worker(s), wrk at "
        f"{args.connections} connections for {args.duration:g}s"
    )
    print(f"  {'(rps / p50 / p99 ms / load average, 1 min)':<42}")
    for label, r in wrk:
        print(
            f"  {label:<42}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['load1']:>9.2f}"
        )
    for label in ("cold", "warm"):
        s = swept[label]
        print(
            f"  sweep {label:<5} {s['s']:>8.2f}s ({s['cpu_s']:.2f}s CPU here) {s['calls']:>6} "
            "MLflow calls "
            f"{s['by_method']}  repairs {s['repairs']}"
        )
    print(f"  audit verify       {verified[0]:>8.3f}s for {verified[1]} events")
    print(
        f"  approvals          {approved['per_s']:>8.1f}/s over HTTP ({args.approval_models} "
        f"requests x 2, {args.approval_threads} clients), p50 {approved['p50_ms']:.0f} ms, "
        f"p99 {approved['p99_ms']:.0f} ms, double moves {doubles}"
    )
    print(
        f"  {'':19}{approved['mlflow_calls_per_promotion']:>8.1f} MLflow requests per "
        "promoted request (two approvals and the move)"
    )
    print(f"  {'':19}by path: {approved['mlflow_calls_by_path']}")
    print(f"  {'':19}CPU ms per promoted request: {approved['cpu_ms_per_promotion']}")


if __name__ == "__main__":
    raise SystemExit(main())
