"""Drift everywhere: every protected alias of every registered model is checked, aliases the
journal does not back are removed, one failing model never stops the others, an MLflow
outage mid-sweep loses nothing, MLflow's signed alias webhooks repair within seconds and a
forged one is refused (the sweep still repairs). Real MLflow; server on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from mlops.errors import RegistryUnavailable
from registry_server.app import reconcile_once
from registry_server.services.drift import reconcile_protected
from tests.conftest import start_mlflow_server, stop_process
from tests.server._procs import start_registry, tokens, wait_until
from tests.server.conftest import Server, log_model

SECRET = "mlflow-webhook-secret-for-tests"


def _promote(server: Server, name: str) -> int:
    version = server.model.register(name)
    digest = server.model.record(name, version)
    res = server.request(name, version, digest)
    assert res.status_code == 201, res.json()
    for user in ("ann", "bob"):
        res = server.approve(res.json()["id"], user)
    assert res.json()["state"] == "promoted", res.json()
    return version


def _events(server: Server, action: str, name: str | None = None) -> list[dict]:
    items = server.client.get("/v1/audit?limit=1000", headers=server.h("root")).json()["items"]
    return [
        e
        for e in items
        if e["action"] == action and (name is None or e["payload"].get("model") == name)
    ]


def _aliases(server: Server, name: str) -> dict[str, int]:
    rm = server.model.client().get_registered_model(name)
    return {a: int(v) for a, v in rm.aliases.items()}


def test_alias_on_a_model_the_server_never_promoted_is_removed(server: Server, name: str) -> None:
    """No journal row at all: the old loop never even looked at this model."""
    version = server.model.register(name)
    mlflow = server.model.client()
    mlflow.set_registered_model_alias(name, "production", str(version))
    mlflow.set_registered_model_alias(name, "staging", str(version))  # not protected

    assert reconcile_once(server.ctx)["restored"] == 1

    assert _aliases(server, name) == {"staging": version}
    [event] = _events(server, "alias_unbacked_removed", name)
    assert event["actor"] == "system"
    assert event["payload"]["alias"] == "production"
    assert event["payload"]["found_version"] == version
    assert event["payload"]["journal"] == "no holder"
    assert reconcile_once(server.ctx)["restored"] == 0


def test_a_model_gone_from_mlflow_does_not_stop_the_others(server: Server, name: str) -> None:
    gone, kept = f"{name}-gone", f"{name}-kept"
    _promote(server, gone)
    version = _promote(server, kept)
    other = server.model.register(kept)
    mlflow = server.model.client()
    mlflow.delete_registered_model(gone)
    mlflow.set_registered_model_alias(kept, "production", str(other))

    assert reconcile_once(server.ctx)["restored"] == 2

    assert _aliases(server, kept) == {"production": version}  # repaired despite `gone`
    assert len(_events(server, "alias_drift_restored", kept)) == 1
    [missing] = _events(server, "alias_holder_missing", gone)
    assert "no longer exists" in missing["payload"]["problem"]


def test_one_failing_model_is_logged_and_skipped(
    server: Server, name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken, fine = f"{name}-broken", f"{name}-fine"
    _promote(server, broken)
    version = _promote(server, fine)
    mlflow = server.model.client()
    for model in (broken, fine):
        mlflow.set_registered_model_alias(model, "production", str(server.model.register(model)))
    gateway = server.ctx.gateway
    real = gateway.identity

    def identity(model: str, v: int):  # type: ignore[no-untyped-def]
        if model == broken:
            raise RuntimeError(f"unexpected answer for {model}")
        return real(model, v)

    monkeypatch.setattr(gateway, "identity", identity)

    assert reconcile_once(server.ctx)["restored"] == 1

    assert _aliases(server, fine) == {"production": version}
    assert f"drift check of model {broken!r} failed" in caplog.text


def test_mlflow_unreachable_mid_sweep_keeps_what_was_done(
    server: Server, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = f"{name}-a", f"{name}-b"
    v1, v2 = _promote(server, first), _promote(server, second)
    mlflow = server.model.client()
    for model in (first, second):
        mlflow.set_registered_model_alias(model, "production", str(server.model.register(model)))
    gateway = server.ctx.gateway
    real_pages = gateway.alias_pages

    def outage_after_one_page(page_size: int = 500):  # type: ignore[no-untyped-def]
        yield [m for page in real_pages(page_size) for m in page if m.name == first]
        raise RegistryUnavailable(f"MLflow at {gateway.tracking_uri} is unreachable (outage).")

    monkeypatch.setattr(gateway, "alias_pages", outage_after_one_page)
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        reconcile_protected(server.ctx)
    assert _aliases(server, first) == {"production": v1}  # done before the outage stays done
    assert not _events(server, "alias_holder_missing")  # unseen is not gone

    monkeypatch.setattr(gateway, "alias_pages", real_pages)  # MLflow is back
    assert reconcile_protected(server.ctx) == 1
    assert _aliases(server, second) == {"production": v2}


def test_the_sweep_reads_the_next_page_while_it_checks_this_one() -> None:
    """At 10,000 models MLflow's answer to each page search was most of a sweep; the next
    page is now read while this one is checked, one page ahead and no more."""
    import threading

    from registry_server.services.drift import _read_ahead

    reading = [threading.Event() for _ in range(5)]

    def pages():  # type: ignore[no-untyped-def]
        for i in range(3):
            reading[i].set()
            yield [f"page-{i}"]
        reading[3].set()  # asked for a fourth page: there is none

    seen = []
    for page in _read_ahead(pages()):
        n = len(seen)
        assert reading[n + 1].wait(10), f"page {n + 1} was not read while page {n} was used"
        assert not reading[n + 2].is_set(), "read more than one page ahead"
        seen.append(page)
    assert seen == [["page-0"], ["page-1"], ["page-2"]]


def _signed(secret: str, event: dict, *, at: float | None = None) -> tuple[bytes, dict]:
    """A delivery signed exactly as MLflow's own webhook code signs it."""
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = json.dumps(event)
    delivery, stamp = str(uuid.uuid4()), str(int(at if at is not None else time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": _generate_hmac_signature(secret, delivery, stamp, body),
    }
    return body.encode(), headers


def _alias_event(name: str, version: int) -> dict:
    data = {"name": name, "alias": "production", "version": str(version)}
    return {"entity": "model_version_alias", "action": "created", "timestamp": "t", "data": data}


def test_signed_mlflow_webhook_repairs_the_model_it_names(server: Server, name: str) -> None:
    app = server.client.app
    app.state.settings = app.state.settings.model_copy(update={"mlflow_webhook_secret": SECRET})
    version = _promote(server, name)
    other = server.model.register(name)
    server.model.client().set_registered_model_alias(name, "production", str(other))

    body, headers = _signed(SECRET, _alias_event(name, other))
    res = server.client.post("/v1/mlflow/webhook", content=body, headers=headers)

    assert res.status_code == 200, res.text
    assert res.json() == {"model": name, "repaired": 1}
    assert _aliases(server, name) == {"production": version}


@pytest.mark.parametrize("forgery", ["wrong secret", "stale", "tampered", "unsigned"])
def test_forged_mlflow_webhook_is_refused_and_the_sweep_still_repairs(
    server: Server, name: str, forgery: str
) -> None:
    app = server.client.app
    app.state.settings = app.state.settings.model_copy(update={"mlflow_webhook_secret": SECRET})
    version = _promote(server, name)
    other = server.model.register(name)
    server.model.client().set_registered_model_alias(name, "production", str(other))
    event = _alias_event(name, other)
    secret = "not-the-shared-secret" if forgery == "wrong secret" else SECRET
    body, headers = _signed(secret, event, at=time.time() - 3600 if forgery == "stale" else None)
    if forgery == "tampered":
        body = body.replace(name.encode(), f"{name}-x".encode())
    if forgery == "unsigned":
        del headers["X-MLflow-Signature"]

    res = server.client.post("/v1/mlflow/webhook", content=body, headers=headers)

    assert res.status_code == 401, res.text
    assert res.json()["code"] == "unauthenticated"
    assert res.json()["message"].startswith("MLflow webhook refused: ")
    assert _aliases(server, name) == {"production": other}  # the forgery moved nothing
    assert reconcile_once(server.ctx)["restored"] == 1  # the sweep is the fallback
    assert _aliases(server, name) == {"production": version}


def test_webhook_route_is_off_without_a_secret(server: Server) -> None:
    res = server.client.post("/v1/mlflow/webhook", json=_alias_event("m", 1))
    assert res.status_code == 404
    assert "MLOPS_REGISTRY_MLFLOW_WEBHOOK_SECRET" in res.json()["hint"]


@pytest.mark.slow
def test_real_mlflow_webhooks_revert_drift_within_seconds(
    database_url: str, policy_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real ``mlflow server`` calls the registry on an alias event; the sweep is an hour
    away, so only the webhook can have put the alias back."""
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
    from tests.conftest import free_port

    port = free_port()
    mlflow_server = start_mlflow_server(tmp_path / "mlflow")
    registry = None
    try:
        model = log_model(mlflow_server.url)
        name = f"hook-{uuid.uuid4().hex[:8]}"
        version = model.register(name)
        digest = model.record(name, version)
        other = model.register(name)
        registry = start_registry(
            tmp_path,
            database_url=database_url,
            tracking_uri=mlflow_server.url,
            policy_file=policy_file,
            port=port,
            reconcile_interval=3600,
            mlflow_webhook_url=f"http://127.0.0.1:{port}/v1/mlflow/webhook",
            mlflow_webhook_secret=SECRET,
        )
        with registry.api() as api:
            wait_until(lambda: api.get("/readyz").json()["mlflow_webhook"]["subscribed"], 60)
            h = tokens(api, {"rita": "requester", "ann": "approver", "bob": "approver"})
            body = {"model": name, "version": version, "target": "production"}
            rid = api.post(
                "/v1/promotions", json={**body, "evidence_digest": digest}, headers=h["rita"]
            ).json()["id"]
            api.post(f"/v1/promotions/{rid}/approve", headers=h["ann"])
            res = api.post(f"/v1/promotions/{rid}/approve", headers=h["bob"])
            assert res.json()["state"] == "promoted", res.text

            client = model.client()
            client.set_registered_model_alias(name, "production", str(other))  # out of band
            moved = time.monotonic()
            wait_until(
                lambda: (
                    int(client.get_model_version_by_alias(name, "production").version) == version
                ),
                30,
                0.05,
            )
            window = time.monotonic() - moved
        assert window < 5, f"webhook repair took {window:.1f}s"
    finally:
        if registry is not None:
            registry.stop()
        stop_process(mlflow_server.proc)
