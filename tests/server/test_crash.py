"""Crash safety (multi-process): the server SIGKILLs itself at each fault point of the alias
move; after a restart there is exactly one alias move, one open journal row for the alias
holding the right version, one ``promoted`` event, and an audit chain that verifies."""

from __future__ import annotations

import httpx
import pytest

from registry_server.services.faults import POINTS
from tests.server._procs import ADMIN, alias_writes, start_registry, tokens, wait_until
from tests.server.conftest import MlflowModel

pytestmark = pytest.mark.slow  # real server processes, killed and restarted

WRITES_AFTER_RESTART = {"after_intent": 1, "after_mlflow_set": 1, "after_final": 0}


@pytest.mark.parametrize("point", POINTS)
def test_crash_at_fault_point_then_restart(
    point: str,
    database_url: str,
    policy_file,
    mlflow_model: MlflowModel,
    name: str,
    tmp_path,
) -> None:
    version = mlflow_model.register(name)
    digest = mlflow_model.record(name, version)
    common = {
        "database_url": database_url,
        "tracking_uri": mlflow_model.tracking_uri,
        "policy_file": policy_file,
    }
    first = start_registry(
        tmp_path,
        **common,
        fault_point=point,
        reconcile_interval=0,
        intent_lease=1,
        log_name="first.log",
    )
    with first.api() as api:
        h = tokens(api, {"rita": "requester", "ann": "approver", "bob": "approver"})
        body = {"model": name, "version": version, "target": "production"}
        rid = api.post(
            "/v1/promotions", json={**body, "evidence_digest": digest}, headers=h["rita"]
        ).json()["id"]
        assert api.post(f"/v1/promotions/{rid}/approve", headers=h["ann"]).status_code == 200
        with pytest.raises(httpx.TransportError):  # the process dies mid-request
            api.post(f"/v1/promotions/{rid}/approve", headers=h["bob"])
    assert first.proc.wait(timeout=30) == -9  # SIGKILL, no clean shutdown
    assert f"fault point {point} armed" in first.log_text()
    writes_before = alias_writes(first.log_text())
    assert writes_before == (0 if point == "after_intent" else 1)

    second = start_registry(
        tmp_path,
        **common,
        port=first.port,
        reconcile_interval=0.3,
        intent_lease=1,
        log_name="second.log",
    )
    try:
        with second.api() as api:
            wait_until(lambda: api.get(f"/v1/promotions/{rid}").json()["state"] == "promoted", 60)
            admin = {"Authorization": f"Bearer {ADMIN}"}
            history = api.get(f"/v1/aliases/{name}/production/history").json()["items"]
            assert [(x["version"], x["to"], x["request_id"]) for x in history] == [
                (version, None, rid)
            ]
            assert api.get(f"/v1/aliases/{name}/production").json()["version"] == version
            events = api.get("/v1/audit?limit=1000", headers=admin).json()["items"]
            promoted = [e for e in events if e["action"] == "promoted"]
            assert len(promoted) == 1 and promoted[0]["payload"]["request_id"] == rid
            assert api.get("/v1/audit/verify", headers=admin).json()["ok"] is True
    finally:
        second.stop()
    mv = mlflow_model.client().get_model_version_by_alias(name, "production")
    assert int(mv.version) == version
    assert alias_writes(second.log_text()) == WRITES_AFTER_RESTART[point]
