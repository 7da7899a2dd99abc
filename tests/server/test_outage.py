"""MLflow outage (multi-process): a real ``mlflow server`` is stopped while the second
approval arrives; the request stays ``approved`` with recorded attempts and back-off; once
MLflow is started again on the same port and store, the move completes, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import free_port, stop_process
from tests.server._procs import (
    ADMIN,
    alias_writes,
    start_mlflow,
    start_registry,
    tokens,
    wait_until,
)
from tests.server.conftest import log_model

pytestmark = pytest.mark.slow  # real mlflow and registry processes


def _intent(database_url: str, rid: int) -> tuple[int, str, str | None]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT attempts, next_attempt_at, last_error FROM outbox WHERE request_id = :r"
                ),
                {"r": rid},
            ).one()
    finally:
        engine.dispose()
    return int(row[0]), str(row[1]), row[2]


def test_outage_then_recovery_promotes_once(
    database_url: str, policy_file: Path, tmp_path: Path
) -> None:
    port = free_port()
    store = tmp_path / "mlflow"
    mlflow_proc = start_mlflow(store, port)
    uri = f"http://127.0.0.1:{port}"
    try:
        model = log_model(uri)
        name = f"outage-{tmp_path.name[-8:]}"
        version = model.register(name)
        digest = model.record(name, version)
        server = start_registry(
            tmp_path,
            database_url=database_url,
            tracking_uri=uri,
            policy_file=policy_file,
            reconcile_interval=0.5,
            retry_backoff=0.5,  # 0.5, 1, 1, 1 ... s: MLflow's return is seen within a second
            retry_backoff_max=1,
        )
        try:
            with server.api() as api:
                h = tokens(api, {"rita": "requester", "ann": "approver", "bob": "approver"})
                body = {"model": name, "version": version, "target": "production"}
                rid = api.post(
                    "/v1/promotions", json={**body, "evidence_digest": digest}, headers=h["rita"]
                ).json()["id"]
                assert api.post(f"/v1/promotions/{rid}/approve", headers=h["ann"]).is_success

                stop_process(mlflow_proc)  # MLflow goes away
                res = api.post(f"/v1/promotions/{rid}/approve", headers=h["bob"])
                assert res.status_code == 200, res.text
                assert res.json()["state"] == "approved"
                assert any("alias move pending (attempts 1" in b for b in res.json()["blocked_by"])
                wait_until(lambda: _intent(database_url, rid)[0] >= 3, 30)  # retried, backing off
                attempts, next_at, error = _intent(database_url, rid)
                assert error and "failed" in error
                blocked = api.get(f"/v1/promotions/{rid}").json()["blocked_by"]
                assert any(f"attempts {attempts}, next " in b for b in blocked), blocked
                assert next_at
                assert api.get(f"/v1/promotions/{rid}").json()["state"] == "approved"

                mlflow_proc = start_mlflow(store, port)  # same port, same store
                wait_until(
                    lambda: api.get(f"/v1/promotions/{rid}").json()["state"] == "promoted", 90
                )
                admin = {"Authorization": f"Bearer {ADMIN}"}
                events = api.get("/v1/audit?limit=1000", headers=admin).json()["items"]
                approvals = [e for e in events if e["action"] == "approval"]
                assert [e["actor"] for e in approvals] == ["ann", "bob"]  # nothing lost
                assert approvals[1]["payload"]["evidence_verified"] is False
                assert len([e for e in events if e["action"] == "promoted"]) == 1
                assert api.get("/v1/audit/verify", headers=admin).json()["ok"] is True
                history = api.get(f"/v1/aliases/{name}/production/history").json()["items"]
                assert [(x["version"], x["to"]) for x in history] == [(version, None)]
        finally:
            server.stop()
        assert alias_writes(server.log_text()) == 1
        assert int(model.client().get_model_version_by_alias(name, "production").version) == version
        final_attempts = _intent(database_url, rid)[0]
        assert final_attempts > attempts >= 3
    finally:
        stop_process(mlflow_proc)
