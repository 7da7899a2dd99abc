"""The verifier re-derives a request's evidence before approvals count: the data fetched by
its DVC md5 from a real local remote, the model loaded from real MLflow, the suite re-run
with real GX, the candidate and champion re-scored; on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import mlops
from mlops import evidence
from mlops.client import RegistryClient
from mlops.promotion import submit
from registry_server.services.verifier import _claim, verify_due
from tests.server.conftest import Clock, Server, server_app

ROOT = Path(__file__).resolve().parents[2]

POLICY = """
version: 1
targets:
  production:
    verify: [validation, evaluation]
    checks:
      suites: [iris_train]
      metrics:
        accuracy: {threshold: 0.8}
    approvals: {count: 1, roles: [approver]}
  staging:
    checks:
      suites: [iris_train]
    approvals: {count: 1, roles: [approver]}
"""
VERIFY_SETTINGS = {"verify_interval": 0, "webhook_interval": 0, "ui": True}


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``server`` fixture's policy here: production verifies validation + evaluation."""
    path = tmp_path_factory.mktemp("verify-policy") / "promotion-policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """The verifier loop off (tests run its passes themselves), the reviewer pages on."""
    return dict(VERIFY_SETTINGS)


@pytest.fixture(scope="module")
def validation_report(lineage_run) -> dict[str, Any]:
    """The iris suite run once on the session's DVC-tracked iris data (real GX)."""
    from mlops.validation import load_suite, validate

    _, ds, _ = lineage_run
    return validate(ds, load_suite(ROOT / "suites" / "iris_train.yaml"), log=False).to_dict()


def _register(lineage_run, name: str) -> int:
    return int(mlops.register(lineage_run[2], name).version)


def _honest(lineage_run, validation_report, name: str, version: int) -> dict[str, Any]:
    """Evidence as mlops.promote builds it (without packaging): GX + a real evaluation."""
    from mlops.evaluation import evaluate

    _, ds, _ = lineage_run
    report = evaluate(
        name, version, data=ds, target="target", thresholds={"accuracy": {"threshold": 0.8}},
        log=False,
    )  # fmt: skip
    return evidence.collect(
        name, version, validation=[validation_report], evaluation=report
    ).to_dict()


def _record(bundle: dict[str, Any]) -> str:
    return evidence.record(evidence.Evidence.from_dict(bundle))


def _events(srv: Server, name: str, action: str) -> list[dict]:
    items = srv.client.get("/v1/audit?limit=1000", headers=srv.h("root")).json()["items"]
    return [e for e in items if e["action"] == action and e["payload"].get("model") == name]


def _with_champion(lineage_run, name: str) -> int:
    """v1 holds ``production`` in MLflow (not judged by this policy); returns v2."""
    _register(lineage_run, name)
    from mlflow.tracking import MlflowClient

    MlflowClient().set_registered_model_alias(name, "production", "1")
    return _register(lineage_run, name)


def test_fabricated_bundle_is_rejected_naming_each_value(
    server: Server, name: str, lineage_run, validation_report
) -> None:
    version = _with_champion(lineage_run, name)
    bundle = _honest(lineage_run, validation_report, name, version)
    metrics = bundle["evaluation"]["metrics"]
    real = dict(metrics["candidate"])
    metrics["candidate"] = {k: 0.999 for k in real}
    metrics["champion"] = {k: 0.5 for k in real}
    digest = _record(bundle)

    res = server.request(name, version, digest)
    assert res.status_code == 201, res.json()
    assert res.json()["state"] == "verifying"
    assert verify_due(server.ctx) == 1

    body = server.client.get(f"/v1/promotions/{res.json()['id']}").json()
    assert body["state"] == "rejected"
    found = body["verification"]
    assert found["state"] == "unverified" and found["code"] == "evidence_unverified"
    named = {d["what"]: d for d in found["differences"]}
    for metric, value in real.items():
        cand = named[f"evaluation.metrics.candidate.{metric}"]
        assert cand["bundle"] == 0.999 and cand["recomputed"] == pytest.approx(value)
        assert named[f"evaluation.metrics.champion.{metric}"]["bundle"] == 0.5
    assert not [w for w in named if w.startswith("validation")]  # the honest part matched
    (event,) = _events(server, name, "evidence_unverified")
    assert event["actor"] == "system"
    assert event["payload"]["differing"] == 2 * len(real)
    assert "evaluation.metrics.candidate.accuracy: bundle 0.999" in event["payload"]["reason"]
    assert server.client.get("/v1/audit/verify", headers=server.h("root")).json()["ok"]
    _status_names_the_differences(body, real)


def _status_names_the_differences(body: dict, real: dict) -> None:
    """What `mlops status ID` prints for it: the code, and each value with both numbers."""
    import typer
    from typer.testing import CliRunner

    from mlops.cli._output import show_promotion
    from mlops.client import Promotion

    app = typer.Typer()
    app.command()(lambda: show_promotion(Promotion.from_dict(body), as_json=False))
    out = CliRunner().invoke(app, [], terminal_width=200).output
    assert "verification (validation, evaluation): unverified" in out
    assert "evidence_unverified: " in out
    assert "evaluation.metrics.candidate.accuracy" in out and "0.999" in out
    assert repr(real["accuracy"]) in out


@pytest.mark.parametrize("server_settings", [{"verify_interval": 0.2, "webhook_interval": 0}])
def test_honest_bundle_is_verified_by_the_background_worker_then_approvable(
    server: Server, name: str, lineage_run, validation_report
) -> None:
    version = _with_champion(lineage_run, name)
    digest = _record(_honest(lineage_run, validation_report, name, version))
    with server.client as client:  # the lifespan runs the verifier loop
        requester = RegistryClient(http=client, token=server.tokens["rita"])
        handle = submit(name, version, to="production", digest=digest, client=requester)
        assert handle.state == "verifying"

        handle.wait_verified(timeout=60)  # what mlops.promote() does after it submits

        assert handle.state == "pending", handle.promotion
        found = handle.promotion.verification
        assert found["state"] == "verified" and found["differences"] == []
        assert found["steps"] == ["validation", "evaluation"] and found["checked"] > 20
        body = server.approve(handle.id, "ann").json()
        assert body["state"] == "promoted", body
        assert client.app.state.loops["verifier"].report()["alive"]
        assert len(_events(server, name, "evidence_verified")) == 1


def test_approval_while_verifying_is_refused_with_its_code(
    server: Server, name: str, lineage_run, validation_report
) -> None:
    version = _register(lineage_run, name)
    digest = _record(_honest(lineage_run, validation_report, name, version))
    rid = server.request(name, version, digest).json()["id"]

    res = server.approve(rid, "ann")

    assert res.status_code == 409
    assert res.json()["code"] == "evidence_verifying"
    assert f"GET /v1/promotions/{rid}" in res.json()["hint"]
    assert verify_due(server.ctx) == 1
    assert server.approve(rid, "ann").json()["state"] == "promoted"


def test_tampered_validation_result_is_caught(
    server: Server, name: str, lineage_run, validation_report
) -> None:
    version = _register(lineage_run, name)
    bundle = _honest(lineage_run, validation_report, name, version)
    report = bundle["validation"][0]
    rows = next(i for i, r in enumerate(report["results"]) if "row_count" in r["type"])
    report["rows"] = 5000
    report["results"][rows]["observed"]["observed_value"] = 5000
    digest = _record(bundle)

    rid = server.request(name, version, digest).json()["id"]
    verify_due(server.ctx)

    body = server.client.get(f"/v1/promotions/{rid}").json()
    assert body["state"] == "rejected"
    listed = server.client.get("/v1/promotions", params={"state": "rejected"}).json()["items"]
    assert listed == [body]  # a page reads its verifications at once: the same answer
    named = {d["what"]: d for d in body["verification"]["differences"]}
    assert set(named) == {
        "validation[iris_train].rows",
        f"validation[iris_train].results[{rows}].observed.observed_value",
    }
    assert named["validation[iris_train].rows"] == {
        "what": "validation[iris_train].rows",
        "bundle": 5000,
        "recomputed": 150,
    }
    page = _page(server, f"/ui/requests/{rid}")
    assert "Verified by the server (validation, evaluation)" in page
    assert '<code>validation[iris_train].rows</code></th><td data-label="Evidence">5000' in page
    assert '<td data-label="Recomputed">150</td>' in page
    assert "No verifying requests." in _page(server, "/ui/requests?state=verifying")
    assert f'href="/ui/requests/{rid}"' in _page(server, "/ui/requests?state=rejected")


def _page(srv: Server, path: str, user: str = "ann") -> str:
    """A reviewer page, signed in as ``user``."""
    import re

    login = srv.client.get("/ui/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    form = {"token": srv.tokens[user], "csrf_token": csrf, "next": "/ui/requests"}
    srv.client.post("/ui/login", data=form, follow_redirects=False)
    res = srv.client.get(path)
    assert res.status_code == 200, res.text[:2000]
    return res.text


def test_data_missing_from_the_remote_ends_unverifiable(
    server: Server, name: str, lineage_run, validation_report
) -> None:
    version = _register(lineage_run, name)
    bundle = _honest(lineage_run, validation_report, name, version)
    bundle["evaluation"]["dataset"]["md5"] = "0123456789abcdef0123456789abcdef"  # never pushed
    digest = _record(bundle)

    rid = server.request(name, version, digest).json()["id"]
    for attempt in range(1, server.ctx.verify_max_attempts):  # a push may still come
        assert verify_due(server.ctx) == 0
        running = server.client.get(f"/v1/promotions/{rid}").json()
        assert running["state"] == "verifying"
        assert running["verification"]["attempts"] == attempt
        assert "is not in the DVC remote" in running["verification"]["reason"]
        listed = server.client.get("/v1/promotions", params={"state": "verifying"}).json()
        assert listed["items"] == [running]
        server.clock.advance(seconds=2.0**attempt)
    assert verify_due(server.ctx) == 1

    body = server.client.get(f"/v1/promotions/{rid}").json()
    assert body["state"] == "rejected"
    found = body["verification"]
    assert found["code"] == "evidence_unverifiable"
    assert found["attempts"] == server.ctx.verify_max_attempts
    assert "0123456789abcdef0123456789abcdef" in found["reason"]
    assert "is not in the DVC remote" in found["reason"]
    (event,) = _events(server, name, "evidence_unverifiable")
    assert event["payload"]["reason"] == found["reason"]


def test_restart_mid_verification_resumes_and_verifies_once(
    server: Server, name: str, lineage_run, validation_report, database_url: str,
    policy_file: Path,
) -> None:  # fmt: skip
    version = _register(lineage_run, name)
    digest = _record(_honest(lineage_run, validation_report, name, version))
    rid = server.request(name, version, digest).json()["id"]
    ctx = server.ctx
    job_id = _job_id(ctx, rid)
    assert _claim(ctx, job_id) is not None  # a worker took it, then died before finishing
    assert verify_due(ctx) == 0  # leased: nobody else runs it meanwhile

    clock = Clock(now=server.clock.now)
    clock.advance(seconds=ctx.verify_lease + 1)
    restarted = server_app(
        database_url, policy_file, server.model.tracking_uri, name, clock, **VERIFY_SETTINGS
    )
    try:
        assert verify_due(restarted.state.ctx) == 1
        assert verify_due(restarted.state.ctx) == 0
        assert verify_due(ctx) == 0
    finally:
        restarted.state.ctx.db.dispose()

    body = server.client.get(f"/v1/promotions/{rid}").json()
    assert body["state"] == "pending"
    assert body["verification"]["attempts"] == 2
    assert len(_events(server, name, "evidence_verified")) == 1


def _job_id(ctx: Any, rid: int) -> int:
    from sqlalchemy import select

    from registry_server.db.models import Outbox

    with ctx.db.read_sessions() as s:
        return s.scalar(select(Outbox.id).where(Outbox.kind == "verify", Outbox.request_id == rid))


def test_a_target_without_verify_keeps_todays_behaviour(
    server: Server, name: str, lineage_run, validation_report
) -> None:
    version = _register(lineage_run, name)
    bundle = _honest(lineage_run, validation_report, name, version)
    bundle["evaluation"]["metrics"]["candidate"]["accuracy"] = 0.999  # not re-derived here
    digest = _record(bundle)

    body = server.request(name, version, digest, target="staging").json()

    assert body["state"] == "pending" and body["verification"] is None
    assert verify_due(server.ctx) == 0
    assert server.approve(body["id"], "ann").json()["state"] == "promoted"


def test_a_server_killed_mid_verification_is_resumed_by_the_next_one(
    database_url: str, policy_file: Path, mlflow_home: Path, name: str, lineage_run,
    validation_report, tmp_path: Path,
) -> None:  # fmt: skip
    import httpx

    from tests.server._procs import ADMIN, start_registry, tokens, wait_until

    version = _register(lineage_run, name)
    digest = _record(_honest(lineage_run, validation_report, name, version))
    common = {
        "database_url": database_url,
        "tracking_uri": f"sqlite:///{mlflow_home / 'mlflow.db'}",
        "policy_file": policy_file,
        "reconcile_interval": 0,
        "verify_interval": 0.3,
        "verify_lease": 1,
    }
    first = start_registry(tmp_path, **common, fault_point="mid_verification")
    with first.api() as api:
        h = tokens(api, {"rita": "requester"})
        body = {"model": name, "version": version, "target": "production"}
        res = api.post(
            "/v1/promotions", json={**body, "evidence_digest": digest}, headers=h["rita"]
        )
        assert res.json()["state"] == "verifying"
    assert first.proc.wait(timeout=120) == -9  # killed after re-deriving, before writing
    assert "fault point mid_verification armed" in first.log_text()

    second = start_registry(tmp_path, **common, port=first.port, log_name="second.log")
    try:
        with second.api() as api:
            rid = res.json()["id"]
            wait_until(lambda: api.get(f"/v1/promotions/{rid}").json()["state"] != "verifying", 120)
            got = api.get(f"/v1/promotions/{rid}").json()
            assert got["state"] == "pending", got
            assert got["verification"]["state"] == "verified"
            assert got["verification"]["attempts"] == 2
            admin = {"Authorization": f"Bearer {ADMIN}"}
            events = api.get("/v1/audit?limit=1000", headers=admin).json()["items"]
            mine = sorted(e["action"] for e in events if e["payload"].get("request_id") == rid)
            assert mine == ["evidence_verified", "requested", "verification_started"]
    except httpx.TransportError:
        raise AssertionError(second.log_text()[-4000:]) from None
    finally:
        second.stop()


def test_a_champion_version_that_does_not_exist_ends_unverifiable_at_once(
    server: Server, name: str, lineage_run, validation_report
) -> None:
    version = _with_champion(lineage_run, name)
    bundle = _honest(lineage_run, validation_report, name, version)
    bundle["evaluation"]["champion_version"] = 99  # scored against a version never registered
    rid = server.request(name, version, _record(bundle)).json()["id"]

    assert verify_due(server.ctx) == 1  # no retries: asking again cannot help

    found = server.client.get(f"/v1/promotions/{rid}").json()["verification"]
    assert (found["state"], found["code"], found["attempts"]) == (
        "unverifiable", "evidence_unverifiable", 1,
    )  # fmt: skip
    assert f"Model {name!r} has no version 99" in found["reason"]
