"""The real background loop: an alias moved in MLflow behind the server's back is put back
within the configured ``reconcile_interval`` and the attempt is audited."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from registry_server.app import create_app
from registry_server.settings import RegistrySettings
from registry_server.tokens import create_token
from tests.server.conftest import USERS, MlflowModel

INTERVAL = 0.2


def test_drift_is_restored_by_the_background_loop(
    database_url: str, policy_file: Path, mlflow_model: MlflowModel, name: str
) -> None:
    settings = RegistrySettings(
        database_url=database_url,
        policy_path=policy_file,
        tracking_uri=mlflow_model.tracking_uri,
        reconcile_interval=INTERVAL,
        webhook_interval=0,
        ui=False,
    )
    app = create_app(settings)
    with app.state.ctx.db.session() as s:
        tokens = {u: create_token(s, u, r).token for u, r in USERS.items()}
    h = {u: {"Authorization": f"Bearer {t}"} for u, t in tokens.items()}
    version = mlflow_model.register(name)
    digest = mlflow_model.record(name, version)
    other = mlflow_model.register(name)
    mlflow = mlflow_model.client()
    with TestClient(app) as client:
        body = {"model": name, "version": version, "target": "production"}
        rid = client.post(
            "/v1/promotions", json={**body, "evidence_digest": digest}, headers=h["rita"]
        ).json()["id"]
        client.post(f"/v1/promotions/{rid}/approve", headers=h["ann"])
        assert client.post(f"/v1/promotions/{rid}/approve", headers=h["bob"]).json()["state"] == (
            "promoted"
        )

        mlflow.set_registered_model_alias(name, "production", str(other))  # out of band
        moved_at = time.monotonic()
        deadline = moved_at + 20
        while int(mlflow.get_model_version_by_alias(name, "production").version) != version:
            assert time.monotonic() < deadline, "drift not restored"
            time.sleep(0.05)
        took = time.monotonic() - moved_at

        events = client.get("/v1/audit?limit=1000", headers=h["root"]).json()["items"]
        drift = [e for e in events if e["action"] == "alias_drift_restored"]
        assert len(drift) == 1
        assert drift[0]["actor"] == "system"
        assert drift[0]["payload"]["found_version"] == other
        assert drift[0]["payload"]["restored_version"] == version
        assert drift[0]["payload"]["seen"]["version"] == other
        history = client.get(f"/v1/aliases/{name}/production/history").json()["items"]
        assert [(x["version"], x["to"]) for x in history] == [(version, None)]
        assert client.get("/v1/audit/verify", headers=h["root"]).json()["ok"] is True
    assert took < 10 * INTERVAL + 5  # detected within a few intervals, not minutes


def test_a_failing_loop_backs_off_doubling_up_to_the_longest_wait_it_is_given() -> None:
    from registry_server.loops import LoopHealth

    health = LoopHealth("reconcile", 0.5, max_delay=3.0)  # MLOPS_REGISTRY_RETRY_BACKOFF_MAX
    waits = []
    for failures in range(6):
        health.failures = failures
        waits.append(health.delay())
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert LoopHealth("slow", 10.0, max_delay=3.0, failures=3).delay() == 10.0  # never below


def test_the_server_gives_its_loops_the_longest_wait_of_its_settings(
    tmp_path: Path, policy_file: Path, mlflow_model: MlflowModel
) -> None:
    settings = RegistrySettings(
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        policy_path=policy_file,
        tracking_uri=mlflow_model.tracking_uri,
        reconcile_interval=0.5,
        retry_backoff_max=2.0,
        ui=False,
    )
    app = create_app(settings)
    with TestClient(app):
        loop = app.state.loops["reconcile"]
        loop.failures = 5
        assert loop.delay() == 2.0
    app.state.ctx.db.dispose()
