"""The server as it runs in production: ``registry_server.run()`` with two uvicorn workers,
talking to a real ``mlflow server`` over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests._registry import start_registry
from tests.server.conftest import log_model

pytestmark = pytest.mark.slow


def test_two_workers_promote_through_mlflow_over_http(
    mlflow_server, policy_file: Path, tmp_path: Path
) -> None:
    model = log_model(mlflow_server.url)
    name = "proc-iris"
    version = model.register(name)
    digest = model.record(name, version)

    server = start_registry(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'registry.db'}",
        tracking_uri=mlflow_server.url,
        policy_file=policy_file,
        admin_token="proc-admin",
        log_name="server.log",
        workers=2,
        reconcile_interval=1,
        session_secret="process-session-secret",
    )
    base = server.url
    try:
        api = httpx.Client(base_url=base, timeout=60)
        admin = {"Authorization": "Bearer proc-admin"}

        def token(user: str, role: str) -> dict[str, str]:
            res = api.post("/v1/tokens", json={"user": user, "roles": [role]}, headers=admin)
            assert res.status_code == 201, res.text
            return {"Authorization": f"Bearer {res.json()['token']}"}

        body = {
            "model": name,
            "version": version,
            "target": "production",
            "evidence_digest": digest,
        }
        created = api.post("/v1/promotions", json=body, headers=token("rita", "requester"))
        assert created.status_code == 201, created.text
        rid = created.json()["id"]
        assert api.post(f"/v1/promotions/{rid}/approve", headers=token("ann", "approver")).json()[
            "quorum"
        ] == {"have": 1, "need": 2}
        done = api.post(f"/v1/promotions/{rid}/approve", headers=token("bob", "approver"))
        assert done.json()["state"] == "promoted", done.text

        assert int(model.client().get_model_version_by_alias(name, "production").version) == version
        for _ in range(20):  # both workers answer the same holder from the shared journal
            assert api.get(f"/v1/aliases/{name}/production").json()["version"] == version
        assert api.get("/v1/audit/verify", headers=admin).json()["ok"] is True
    finally:
        server.stop()
    assert server.proc.returncode is not None


def test_the_move_reads_the_registered_model_only_where_mlflow_checks_for_a_prompt(
    mlflow_server,
) -> None:
    """The signed decision's two MLflow calls of an alias move (the model digest, the tag on
    the version) do not read the whole registered model: ``MlflowClient`` read it before
    each, to check that the name is not a prompt, a check the move's own ``set_alias``
    keeps. In an approval run that read was the costliest of MLflow's handlers."""
    from registry_server.mlflow_gateway import MlflowGateway
    from tests.conftest import mlflow_requests

    model = log_model(mlflow_server.url)
    name = "proc-digest"
    version = model.register(name)
    gateway = MlflowGateway(mlflow_server.url)
    gateway.preload()

    before = mlflow_requests(mlflow_server.log)
    digest = gateway.model_digest(name, version)
    gateway.attach_attestation(name, version, "production", "ab" * 32, '{"envelope": 1}')
    calls = mlflow_requests(mlflow_server.log) - before

    assert len(digest) == 64 and digest == gateway.model_digest(name, version)
    assert calls["registered-models/get"] == 0, calls
    assert calls["model-versions/get-download-uri"] == 1 and calls["model-versions/set-tag"] == 1
    tags = model.client().get_model_version(name, str(version)).tags
    assert tags["mlops.attestation.production"] == "ab" * 32

    gateway.set_alias(name, "production", version)  # MLflow's own prompt check stays here
    assert (mlflow_requests(mlflow_server.log) - before)["registered-models/get"] == 1
