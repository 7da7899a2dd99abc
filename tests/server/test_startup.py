"""Startup and the background loops: a request right after ``/readyz`` first answers works,
no exception kills a loop, ``/readyz`` says not ready when a loop is dead or MLflow cannot be
loaded, and an unexpected error still answers our JSON body. Server on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from registry_server.app import create_app
from tests.server._procs import start_registry, tokens
from tests.server.conftest import FlakyGateway, MlflowModel, Server

PARTIAL = "cannot import name 'MlflowClient' from partially initialized module 'mlflow.tracking'"


def _promote(server: Server, name: str) -> int:
    version = server.model.register(name)
    digest = server.model.record(name, version)
    res = server.request(name, version, digest)
    for user in ("ann", "bob"):
        res = server.approve(res.json()["id"], user)
    assert res.json()["state"] == "promoted", res.json()
    return version


def _holder(model: MlflowModel, name: str) -> int | None:
    aliases = model.client().get_registered_model(name).aliases
    return int(aliases["production"]) if "production" in aliases else None


def _wait(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_promotion_right_after_ready_does_not_break_the_server(
    database_url: str, policy_file: Path, mlflow_model: MlflowModel, tmp_path: Path, name: str
) -> None:
    """The finding: after a restart, the first request and the first reconcile pass (which
    reads MLflow for the journal's aliases) imported mlflow at the same time ("partially
    initialized module"), the loop died and every MLflow route answered a plain-text 500
    while /readyz said ok. A server with a journal, restarted three times, probed at once."""
    common = {
        "database_url": database_url,
        "tracking_uri": mlflow_model.tracking_uri,
        "policy_file": policy_file,
        "reconcile_interval": 0.2,
        "governed_models": f"{name}*",
    }
    version = mlflow_model.register(name)
    digest = mlflow_model.record(name, version)
    first = start_registry(tmp_path, log_name="registry-first.log", **common)
    try:
        with first.api() as api:
            h = tokens(api, {"rita": "requester", "ann": "approver", "bob": "approver"})
            body = {"model": name, "version": version, "target": "production"}
            rid = api.post(
                "/v1/promotions", json={**body, "evidence_digest": digest}, headers=h["rita"]
            ).json()["id"]
            api.post(f"/v1/promotions/{rid}/approve", headers=h["ann"])
            res = api.post(f"/v1/promotions/{rid}/approve", headers=h["bob"])
            assert res.json()["state"] == "promoted", res.text
    finally:
        first.stop()
    for attempt in range(3):
        model_name = f"{name}-{attempt}"
        new_version = mlflow_model.register(model_name)
        new_digest = mlflow_model.record(model_name, new_version)
        registry = start_registry(tmp_path, log_name=f"registry-{attempt}.log", **common)
        try:
            with registry.api() as api:
                body = {"model": model_name, "version": new_version, "target": "production"}
                res = api.post(
                    "/v1/promotions",
                    json={**body, "evidence_digest": new_digest},
                    headers=h["rita"],
                )
                assert res.status_code == 201, (attempt, res.status_code, res.text)
                ready = api.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json()["mlflow"] == "ok"
                assert ready.json()["loops"]["reconcile"]["alive"] is True
        finally:
            registry.stop()
        log = registry.log_text()
        assert "partially initialized" not in log and "Traceback" not in log, log[-3000:]


class _ImportFailures(FlakyGateway):
    """The real gateway; while ``armed`` > 0, reaching the MLflow client raises the
    ImportError a half-finished first import of mlflow raises."""

    armed = 0

    @property
    def client(self) -> Any:
        if self.armed > 0:
            self.armed -= 1
            raise ImportError(PARTIAL)
        return super().client


def _loop_app(server: Server, gateway: FlakyGateway, interval: float = 0.1) -> Any:
    settings = server.client.app.state.settings.model_copy(
        update={"reconcile_interval": interval, "webhook_interval": 0}
    )
    return create_app(settings, clock=server.clock, gateway=gateway)


def test_reconcile_loop_survives_any_exception(
    server: Server, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    version = _promote(server, name)
    gateway = _ImportFailures(server.model.tracking_uri)
    app = _loop_app(server, gateway)
    with TestClient(app) as client:
        gateway.armed = 2  # the next two passes fail with an ImportError
        other = server.model.register(name)
        server.model.client().set_registered_model_alias(name, "production", str(other))

        assert _wait(lambda: _holder(server.model, name) == version), "drift never repaired"

        # the alias is back mid-pass; the pass that put it back then ends and is counted
        def reconcile() -> dict[str, Any]:
            return client.get("/readyz").json()["loops"]["reconcile"]

        assert _wait(lambda: reconcile()["passes"] >= 3), reconcile()
        loop = reconcile()
        assert loop["alive"] is True and loop["failures"] == 0 and loop["passes"] >= 3
        assert client.get("/readyz").status_code == 200
    assert "reconcile pass failed unexpectedly (retried)" in caplog.text
    assert PARTIAL in caplog.text


def test_readyz_is_not_ready_when_a_loop_died(server: Server) -> None:
    app = _loop_app(server, FlakyGateway(server.model.tracking_uri), interval=5)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        task = app.state.loops["reconcile"].task
        client.portal.call(_cancel, task)

        res = client.get("/readyz")

        assert res.status_code == 503, res.text
        assert res.json()["status"] == "unavailable"
        assert res.json()["loops"]["reconcile"]["alive"] is False


async def _cancel(task: Any) -> None:
    task.cancel()
    try:
        await task
    except BaseException:  # the CancelledError the cancelled loop ends with
        return


class _Unloadable(FlakyGateway):
    """MLflow's first import failed in this process."""

    def _load(self) -> None:
        raise ImportError(PARTIAL)


def test_readyz_is_not_ready_when_mlflow_cannot_be_loaded(server: Server) -> None:
    app = _loop_app(server, _Unloadable(server.model.tracking_uri), interval=5)
    with TestClient(app) as client:
        res = client.get("/readyz")
    assert res.status_code == 503, res.text
    assert res.json()["mlflow"].startswith("unusable: ImportError: cannot import name")


class _Broken(FlakyGateway):
    def fetch_evidence(self, name: str, version: int) -> Any:
        raise RuntimeError(f"unexpected state of {name} v{version}")


def test_unexpected_error_answers_our_json_body(server: Server, name: str) -> None:
    version = server.model.register(name)
    digest = server.model.record(name, version)
    app = _loop_app(server, _Broken(server.model.tracking_uri), interval=0)
    client = TestClient(app, raise_server_exceptions=False)
    body = {"model": name, "version": version, "target": "production", "evidence_digest": digest}

    res = client.post("/v1/promotions", json=body, headers=server.h("rita"))

    assert res.status_code == 500
    assert res.headers["content-type"] == "application/json"
    assert res.json()["code"] == "internal_error"
    assert res.json()["message"] == "The server failed on POST /v1/promotions: RuntimeError."
    assert "GET /readyz" in res.json()["hint"]
    assert "unexpected state" not in res.text  # internals stay in the server log
