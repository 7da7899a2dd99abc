"""Reliability figures of the approval gate: races, crashes, fuzzing.

1. Concurrency: ``--rounds`` requests, each approved by 32 threads at once (quorum 2),
   in-process on SQLite and on PostgreSQL (if 127.0.0.1:5432 answers); counts the alias
   writes that reach MLflow (through the gateway), journal rows and ``promoted`` events.
2. Faults: for each fault point (after_intent, after_mlflow_set, after_final) a real
   server process kills itself (SIGKILL) during the quorum approval, is restarted, and the
   outcome is checked: promoted, one journal row, one ``promoted`` event, chain verifies.
3. Fuzzing: the schemathesis suite of ``tests/server/test_openapi_fuzz.py`` (derandomized),
   counting generated cases and failures.

Prints a table per part and, as the last line, one JSON object with every figure.

Run from the repository root: ``python benchmarks/reliability.py [--rounds 5]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

APPROVERS = 32
POINTS = ("after_intent", "after_mlflow_set", "after_final")


def _pg_url() -> str | None:
    import psycopg

    name = f"mlops_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        return None
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def _drop_pg(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _race(ctx, rid: int) -> list[object]:  # type: ignore[no-untyped-def]
    """32 threads approve request ``rid`` at the same instant; their answers or errors."""
    from mlops.errors import ConflictError
    from registry_server.services import promotions
    from registry_server.services.context import Caller

    barrier = threading.Barrier(APPROVERS)
    results: list[object] = []

    def approve(user: str) -> None:
        barrier.wait()
        try:
            results.append(promotions.approve(ctx, Caller(user, ("approver",)), rid))
        except ConflictError as exc:
            results.append(exc)

    threads = [threading.Thread(target=approve, args=(f"a{i}",)) for i in range(APPROVERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# --- 1. concurrency ---------------------------------------------------------------------------
def _concurrency(db_url: str, model, policy: Path, rounds: int) -> dict:  # type: ignore[no-untyped-def]
    from mlops.errors import ConflictError
    from registry_server.app import create_app
    from registry_server.mlflow_gateway import MlflowGateway
    from registry_server.services import promotions
    from registry_server.services.context import Caller
    from registry_server.settings import RegistrySettings

    writes: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()

    class Counting(MlflowGateway):
        def set_alias(self, name: str, alias: str, version: int) -> None:
            super().set_alias(name, alias, version)
            with lock:
                writes[(name, version)] += 1

    settings = RegistrySettings(
        database_url=db_url,
        policy_path=policy,
        tracking_uri=model.tracking_uri,
        reconcile_interval=0,
        webhook_interval=0,
        ui=False,
    )
    app = create_app(settings, gateway=Counting(model.tracking_uri))
    ctx = app.state.ctx
    tried = conflicts = 0
    rids = []
    for _ in range(rounds):
        name = f"bench-{uuid.uuid4().hex[:8]}"
        version = model.register(name)
        digest = model.record(name, version)
        req = promotions.create(
            ctx,
            Caller("rita", ("requester",)),
            model=name,
            version=version,
            target="production",
            evidence_digest=digest,
        )
        rids.append(req["id"])
        results = _race(ctx, req["id"])
        tried += len(results)
        conflicts += sum(isinstance(r, ConflictError) for r in results)
    with ctx.db.read_sessions() as s:
        from sqlalchemy import text

        journal = s.execute(text("SELECT count(*) FROM alias_journal")).scalar()
        promoted = s.execute(
            text("SELECT count(*) FROM audit_events WHERE action = 'promoted'")
        ).scalar()
    ctx.db.dispose()
    return {
        "requests": rounds,
        "approvals_tried": tried,
        "conflicts": conflicts,
        "alias_writes": sum(writes.values()),
        "journal_rows": journal,
        "promoted_events": promoted,
        "ok": sum(writes.values()) == journal == promoted == rounds,
    }


# --- 2. faults --------------------------------------------------------------------------------
def _fault(point: str, db_url: str, model, policy: Path, workdir: Path) -> dict:  # type: ignore[no-untyped-def]
    import httpx

    from tests.server._procs import ADMIN, alias_writes, start_registry, tokens, wait_until

    name = f"fault-{uuid.uuid4().hex[:8]}"
    version = model.register(name)
    digest = model.record(name, version)
    common = {"database_url": db_url, "tracking_uri": model.tracking_uri, "policy_file": policy}
    first = start_registry(
        workdir,
        **common,
        fault_point=point,
        reconcile_interval=0,
        intent_lease=1,
        log_name=f"{point}-1.log",
    )
    with first.api() as api:
        h = tokens(api, {"rita": "requester", "ann": "approver", "bob": "approver"})
        body = {
            "model": name,
            "version": version,
            "target": "production",
            "evidence_digest": digest,
        }
        rid = api.post("/v1/promotions", json=body, headers=h["rita"]).json()["id"]
        api.post(f"/v1/promotions/{rid}/approve", headers=h["ann"])
        try:
            api.post(f"/v1/promotions/{rid}/approve", headers=h["bob"])
            died = False
        except httpx.TransportError:
            died = True
    code = first.proc.wait(timeout=30)
    started = time.monotonic()
    second = start_registry(
        workdir,
        **common,
        port=first.port,
        reconcile_interval=0.3,
        intent_lease=1,
        log_name=f"{point}-2.log",
    )
    try:
        with second.api() as api:
            wait_until(lambda: api.get(f"/v1/promotions/{rid}").json()["state"] == "promoted", 60)
            recovered_s = time.monotonic() - started
            admin = {"Authorization": f"Bearer {ADMIN}"}
            history = api.get(f"/v1/aliases/{name}/production/history").json()["items"]
            events = api.get("/v1/audit?limit=1000", headers=admin).json()["items"]
            promoted = [
                e for e in events if e["action"] == "promoted" and e["payload"]["model"] == name
            ]
            chain_ok = api.get("/v1/audit/verify", headers=admin).json()["ok"]
    finally:
        second.stop()
    open_rows = [x for x in history if x["to"] is None]
    ok = (
        died
        and code == -9
        and len(history) == 1
        and len(open_rows) == 1
        and open_rows[0]["version"] == version
        and len(promoted) == 1
        and chain_ok
    )
    return {
        "point": point,
        "killed": died and code == -9,
        "alias_writes": alias_writes(first.log_text(), second.log_text()),
        "journal_rows": len(history),
        "promoted_events": len(promoted),
        "chain_ok": chain_ok,
        "recovered_s": round(recovered_s, 2),
        "ok": ok,
    }


# --- 3. fuzzing -------------------------------------------------------------------------------
def _fuzz() -> dict:
    import pytest

    import tests.server.test_openapi_fuzz as fuzz

    started = time.monotonic()
    code = pytest.main(
        [
            str(ROOT / "tests/server/test_openapi_fuzz.py"),
            "-q",
            "--no-header",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:warnings",
        ]
    )
    return {
        "cases": fuzz.CASES["with_token"] + fuzz.CASES["without_token"],
        "with_token": fuzz.CASES["with_token"],
        "without_token": fuzz.CASES["without_token"],
        "failures": fuzz.CASES["failures"],
        "pytest_exit": int(code),
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="requests raced per database")
    args = parser.parse_args(argv)

    from tests.server.conftest import POLICY, log_model

    work = Path(tempfile.mkdtemp(prefix="mlops-reliability-"))
    policy = work / "promotion-policy.yaml"
    policy.write_text(POLICY)
    model = log_model(f"sqlite:///{work / 'mlflow.db'}")
    pg = _pg_url()
    dbs = {"sqlite": f"sqlite:///{work / 'registry.db'}"}
    if pg:
        dbs["postgres"] = pg
    try:
        races = {db: _concurrency(url, model, policy, args.rounds) for db, url in dbs.items()}
        print(
            f"{'db':<9} {'requests':>8} {'approvals':>9} {'conflicts':>9} {'alias writes':>12} "
            f"{'journal':>7} {'promoted':>8}"
        )
        for db, r in races.items():
            print(
                f"{db:<9} {r['requests']:>8} {r['approvals_tried']:>9} {r['conflicts']:>9} "
                f"{r['alias_writes']:>12} {r['journal_rows']:>7} {r['promoted_events']:>8}"
            )
        faults = []
        for db, url in dbs.items():
            fault_db = f"sqlite:///{work / 'faults.db'}" if db == "sqlite" else url
            for point in POINTS:
                faults.append({"db": db, **_fault(point, fault_db, model, policy, work)})
        print(
            f"\n{'db':<9} {'fault point':<17} {'killed':>6} {'writes':>6} {'journal':>7} "
            f"{'promoted':>8} {'chain':>5} {'recovered s':>11}"
        )
        for f in faults:
            print(
                f"{f['db']:<9} {f['point']:<17} {f['killed']!s:>6} {f['alias_writes']:>6} "
                f"{f['journal_rows']:>7} {f['promoted_events']:>8} {f['chain_ok']!s:>5} "
                f"{f['recovered_s']:>11}"
            )
        fuzz = _fuzz()
        print(
            f"\nfuzz: {fuzz['cases']} cases ({fuzz['with_token']} with a token, "
            f"{fuzz['without_token']} without), {fuzz['failures']} failures, "
            f"{fuzz['seconds']} s"
        )
    finally:
        if pg:
            _drop_pg(pg)
    summary = {
        "approvals_tried": sum(r["approvals_tried"] for r in races.values()),
        "requests_raced": sum(r["requests"] for r in races.values()),
        "alias_moves_seen": sum(r["alias_writes"] for r in races.values()),
        "promoted_events": sum(r["promoted_events"] for r in races.values()),
        "databases": list(dbs),
        "faults_injected": len(faults),
        "faults_recovered": sum(f["ok"] for f in faults),
        "fault_outcomes": {
            f"{f['db']}:{f['point']}": "ok" if f["ok"] else "FAILED" for f in faults
        },
        "fuzz_cases": fuzz["cases"],
        "fuzz_failures": fuzz["failures"],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
