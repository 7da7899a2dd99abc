"""Multi-process: 32 concurrent approvals against three uvicorn workers on PostgreSQL give
one MLflow alias write (counted from the workers' logs), one journal row, one ``promoted``."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.server._procs import ADMIN, alias_writes, start_registry, tokens, wait_until
from tests.server.conftest import MlflowModel

pytestmark = pytest.mark.slow  # three real worker processes

APPROVERS = 32


@pytest.fixture
def pg_database(pg_url: str) -> str:
    from registry_server.db.engine import Database
    from tests.server.conftest import _truncate

    db = Database(pg_url)
    db.upgrade()
    db.dispose()
    _truncate(pg_url)
    return pg_url


def test_32_approvals_three_workers_postgres(
    pg_database: str, policy_file: Path, mlflow_model: MlflowModel, name: str, tmp_path: Path
) -> None:
    version = mlflow_model.register(name)
    digest = mlflow_model.record(name, version)
    server = start_registry(
        tmp_path,
        database_url=pg_database,
        tracking_uri=mlflow_model.tracking_uri,
        policy_file=policy_file,
        workers=3,
        reconcile_interval=0.5,
    )
    try:
        with server.api() as api:
            users = {"rita": "requester", **{f"approver{i:02d}": "approver" for i in range(32)}}
            h = tokens(api, users)
            body = {"model": name, "version": version, "target": "production"}
            rid = api.post(
                "/v1/promotions", json={**body, "evidence_digest": digest}, headers=h["rita"]
            ).json()["id"]

        results: list[tuple[int, dict]] = []
        barrier = threading.Barrier(APPROVERS)

        def approve(user: str) -> None:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                barrier.wait()
                res = client.post(f"/v1/promotions/{rid}/approve", headers=h[user])
                results.append((res.status_code, res.json()))

        threads = [
            threading.Thread(target=approve, args=(f"approver{i:02d}",)) for i in range(APPROVERS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)

        ok = [body for code, body in results if code == 200]
        conflicts = [body for code, body in results if code == 409]
        assert len(results) == APPROVERS
        assert len(ok) == 2, results
        assert len(conflicts) == APPROVERS - 2
        assert all(c["code"] == "conflict" and "not pending" in c["message"] for c in conflicts)
        # Each answer is the request as read after that approval committed. The one that
        # reached the quorum reads it approved (its move in flight, maybe on another worker)
        # or promoted; the other read it pending, or later once it was read after the quorum.
        states = [body["state"] for body in ok]
        assert all(state in ("pending", "approved", "promoted") for state in states), results
        assert any(state in ("approved", "promoted") for state in states), results

        with server.api() as api:
            wait_until(lambda: api.get(f"/v1/promotions/{rid}").json()["state"] == "promoted", 60)
            admin = {"Authorization": f"Bearer {ADMIN}"}
            history = api.get(f"/v1/aliases/{name}/production/history").json()["items"]
            assert [(x["version"], x["to"]) for x in history] == [(version, None)]
            events = api.get("/v1/audit?limit=1000", headers=admin).json()["items"]
            assert len([e for e in events if e["action"] == "promoted"]) == 1
            assert len([e for e in events if e["action"] == "approval"]) == 2
            assert api.get("/v1/audit/verify", headers=admin).json()["ok"] is True
            pids = {
                line.split("[")[1].split("]")[0]
                for line in server.log_text().splitlines()
                if "mlflow alias set:" in line
            }
    finally:
        server.stop()
    assert server.log_text().count("Started server process") == 3  # three workers served
    assert alias_writes(server.log_text()) == 1 and len(pids) == 1
    mv = mlflow_model.client().get_model_version_by_alias(name, "production")
    assert int(mv.version) == version
