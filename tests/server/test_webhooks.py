"""Webhooks end to end: a loopback receiver that fails first, the background dispatcher,
Standard Webhooks signatures checked with the ``standardwebhooks`` library as a receiver
would, stable idempotency keys, the delivery log, replay and secret rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from standardwebhooks.webhooks import WebhookVerificationError

from registry_server.app import create_app
from registry_server.services.webhooks import dispatch_due
from registry_server.settings import RegistrySettings
from registry_server.tokens import create_token
from tests.server._receiver import ADMIN, Receiver, hook_app, lower, receiver, verify, wait
from tests.server.conftest import USERS, MlflowModel

__all__ = ["receiver"]  # the fixture, imported for the tests below

SECRET = "a-webhook-secret-of-some-length"
WHSEC = "whsec_" + base64.b64encode(SECRET.encode()).decode()


def test_deliveries_are_signed_retried_and_replayable(
    database_url: str,
    policy_file: Path,
    mlflow_model: MlflowModel,
    receiver: Receiver,
    name: str,
) -> None:
    settings = RegistrySettings(
        database_url=database_url,
        policy_path=policy_file,
        tracking_uri=mlflow_model.tracking_uri,
        reconcile_interval=0,
        webhook_interval=0.05,
        webhook_backoff=0.1,
        webhook_allow_private=True,  # the receiver is on loopback
        ui=False,
    )
    app = create_app(settings)
    with app.state.ctx.db.session() as s:
        tokens = {u: create_token(s, u, r).token for u, r in USERS.items()}

    def h(user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[user]}"}

    version = mlflow_model.register(name)
    digest = mlflow_model.record(name, version)
    with TestClient(app) as client:
        hook = client.post(
            "/v1/webhooks",
            json={"url": receiver.url, "events": ["requested", "promoted"], "secret": SECRET},
            headers=h("root"),
        )
        assert hook.status_code == 201, hook.text
        hook_id = hook.json()["id"]
        assert hook.json()["secret"] == WHSEC  # a free-form secret keeps its bytes as key
        listed = client.get("/v1/webhooks", headers=h("root")).text
        assert SECRET not in listed and WHSEC not in listed

        body = {"model": name, "version": version, "target": "production"}
        rid = client.post(
            "/v1/promotions", json={**body, "evidence_digest": digest}, headers=h("rita")
        ).json()["id"]
        refused = client.post(f"/v1/promotions/{rid}/approve", headers=h("rita"))
        assert refused.status_code == 403  # rolled back: no event, no delivery
        for user in ("ann", "bob"):
            client.post(f"/v1/promotions/{rid}/approve", headers=h(user))
        wait(lambda: len(receiver.ok()) == 2)

        def log_of() -> list[dict]:
            path = f"/v1/webhooks/{hook_id}/deliveries"
            return client.get(path, headers=h("root")).json()["items"]

        # the receiver answers before the dispatcher records it: wait for the record
        wait(lambda: all(d["state"] == "delivered" for d in log_of()))
        log = log_of()
        assert sorted(d["event"] for d in log) == ["promoted", "requested"]
        assert all(d["state"] == "delivered" and d["last_status"] == 200 for d in log)
        requested = next(d for d in log if d["event"] == "requested")

        # every call verifies with the library; the id is stable across retries
        by_id: dict[str, list[dict]] = {}
        for call in receiver.calls:
            payload = verify(WHSEC, call)
            headers = lower(call["headers"])
            assert payload["delivery"] == headers["webhook-id"]
            assert abs(int(headers["webhook-timestamp"]) - time.time()) < 120
            # deprecated headers, kept for one release: same scheme as before
            mac = hmac.new(SECRET.encode(), call["body"], hashlib.sha256).hexdigest()
            assert headers["x-mlops-signature"] == f"sha256={mac}"
            assert headers["x-mlops-delivery"] == headers["webhook-id"]
            assert headers["x-mlops-timestamp"] == headers["webhook-timestamp"]
            assert payload["event"] == headers["x-mlops-event"]
            by_id.setdefault(headers["webhook-id"], []).append(call)
        assert set(by_id) == {d["id"] for d in log} and len(receiver.calls) == 4
        for d in log:  # the two failures were retried under the same key and body
            calls = by_id[d["id"]]
            assert [c["status"] for c in calls] == [500] * (len(calls) - 1) + [200]
            assert d["attempts"] == len(calls) and len({c["body"] for c in calls}) == 1
        promoted = json.loads(next(c for c in receiver.ok() if b'"promoted"' in c["body"])["body"])
        assert promoted["payload"]["model"] == name and promoted["payload"]["version"] == version

        replay = client.post(f"/v1/webhooks/deliveries/{requested['id']}/replay", headers=h("root"))
        assert replay.status_code == 200 and replay.json()["state"] == "pending"
        before = len(by_id[requested["id"]])
        wait(lambda: len(by_id_of(receiver, requested["id"])) == before + 1)
        replayed = by_id_of(receiver, requested["id"])[-1]
        assert replayed["body"] == by_id[requested["id"]][0]["body"]
        assert verify(WHSEC, replayed)["delivery"] == requested["id"]  # signed anew, same id

        gone = client.delete(f"/v1/webhooks/{hook_id}", headers=h("root"))
        assert gone.status_code == 204
        res = client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=h("root"))
        assert res.status_code == 404 and res.json()["code"] == "not_found"
        with app.state.ctx.db.read_sessions() as s:  # an unsubscribed hook keeps no secret
            left = s.execute(
                text("SELECT count(*) FROM webhook_secrets WHERE webhook_id = :id"),
                {"id": hook_id},
            ).scalar()
        assert left == 0


def by_id_of(receiver: Receiver, delivery_id: str) -> list[dict]:
    with receiver.lock:
        return [c for c in receiver.calls if lower(c["headers"])["webhook-id"] == delivery_id]


def _deliver_one(app, receiver: Receiver, hook: dict, user: str = "kim") -> dict:  # type: ignore[no-untyped-def]
    """Create a token (a ``token_created`` event), dispatch, return the call received."""
    client = TestClient(app)
    before = len(receiver.calls)
    res = client.post("/v1/tokens", json={"user": user, "roles": ["approver"]}, headers=ADMIN)
    assert res.status_code == 201, res.text
    dispatch_due(app.state.ctx)
    assert len(receiver.calls) == before + 1, receiver.calls
    return receiver.last()


def _hook(app, receiver: Receiver, **body: object) -> dict:  # type: ignore[no-untyped-def]
    res = TestClient(app).post(
        "/v1/webhooks",
        json={"url": receiver.url, "events": ["token_created"], **body},
        headers=ADMIN,
    )
    assert res.status_code == 201, res.text
    return res.json()


def test_tampered_body_wrong_secret_and_fresh_timestamp_are_refused(
    database_url: str, policy_file: Path, mlflow_model: MlflowModel, receiver: Receiver
) -> None:
    receiver.fail = 0
    app = hook_app(database_url, policy_file, mlflow_model.tracking_uri, webhook_allow_private=True)
    hook = _hook(app, receiver)
    assert hook["secret"].startswith("whsec_") and len(base64.b64decode(hook["secret"][6:])) == 32
    call = _deliver_one(app, receiver, hook)
    assert verify(hook["secret"], call)["event"] == "token_created"

    tampered = {**call, "body": call["body"].replace(b'"kim"', b'"eve"')}
    assert tampered["body"] != call["body"]
    with pytest.raises(WebhookVerificationError, match="No matching signature found"):
        verify(hook["secret"], tampered)
    other = "whsec_" + base64.b64encode(b"k" * 32).decode()
    with pytest.raises(WebhookVerificationError, match="No matching signature found"):
        verify(other, call)
    # the old scheme's weakness: a captured delivery re-sent with a fresh timestamp
    fresh = {**lower(call["headers"]), "webhook-timestamp": str(int(time.time()) + 30)}
    with pytest.raises(WebhookVerificationError, match="No matching signature found"):
        verify(hook["secret"], {**call, "headers": fresh})
    app.state.ctx.db.dispose()


def test_a_delivery_replayed_outside_the_tolerance_is_refused(
    database_url: str, policy_file: Path, mlflow_model: MlflowModel, receiver: Receiver
) -> None:
    """A delivery captured six minutes ago (signed then) fails the library's 5-minute window."""
    receiver.fail = 0
    app = hook_app(
        database_url,
        policy_file,
        mlflow_model.tracking_uri,
        webhook_allow_private=True,
        clock=lambda: datetime.now(UTC) - timedelta(minutes=6),
    )
    hook = _hook(app, receiver)
    call = _deliver_one(app, receiver, hook)
    sent_at = int(lower(call["headers"])["webhook-timestamp"])
    assert 350 < time.time() - sent_at < 420
    with pytest.raises(WebhookVerificationError, match="Message timestamp too old"):
        verify(hook["secret"], call)
    app.state.ctx.db.dispose()


def test_secret_rotation_signs_with_both_during_the_overlap(
    database_url: str, policy_file: Path, mlflow_model: MlflowModel, receiver: Receiver
) -> None:
    receiver.fail = 0
    app = hook_app(database_url, policy_file, mlflow_model.tracking_uri, webhook_allow_private=True)
    client = TestClient(app)
    hook = _hook(app, receiver)
    old, old_id = hook["secret"], hook["secret_id"]
    verify(old, _deliver_one(app, receiver, hook, "u1"))

    res = client.post(
        f"/v1/webhooks/{hook['id']}/secrets", json={"overlap_seconds": 3600}, headers=ADMIN
    )
    assert res.status_code == 201, res.text
    new, new_id = res.json()["secret"], res.json()["secret_id"]
    assert new != old and new.startswith("whsec_")
    listed = client.get("/v1/webhooks", headers=ADMIN)
    assert new not in listed.text and old not in listed.text
    (item,) = listed.json()["items"]
    expiry = {k["id"]: k["expires_at"] for k in item["secrets"]}
    assert expiry[new_id] is None and expiry[old_id] is not None

    during = _deliver_one(app, receiver, hook, "u2")  # the overlap: both verify
    assert len(lower(during["headers"])["webhook-signature"].split(" ")) == 2
    assert verify(old, during)["payload"]["user"] == "u2"
    assert verify(new, during)["payload"]["user"] == "u2"
    legacy = hmac.new(base64.b64decode(old[6:]), during["body"], hashlib.sha256).hexdigest()
    assert lower(during["headers"])["x-mlops-signature"] == f"sha256={legacy}"

    last = client.delete(f"/v1/webhooks/{hook['id']}/secrets/{new_id}", headers=ADMIN)
    gone = client.delete(f"/v1/webhooks/{hook['id']}/secrets/{old_id}", headers=ADMIN)
    assert last.status_code == 204 and gone.status_code == 409  # one must stay
    assert gone.json()["code"] == "conflict" and "/secrets" in gone.json()["hint"]
    after = _deliver_one(app, receiver, hook, "u3")  # the dropped one no longer signs
    assert verify(old, after)["payload"]["user"] == "u3"
    with pytest.raises(WebhookVerificationError, match="No matching signature found"):
        verify(new, after)

    # an overlap that runs out by itself
    res = client.post(
        f"/v1/webhooks/{hook['id']}/secrets", json={"overlap_seconds": 1}, headers=ADMIN
    )
    newest = res.json()["secret"]
    during = _deliver_one(app, receiver, hook, "u4")
    assert verify(old, during) and verify(newest, during)
    time.sleep(1.2)
    after = _deliver_one(app, receiver, hook, "u5")
    assert verify(newest, after)["payload"]["user"] == "u5"
    with pytest.raises(WebhookVerificationError, match="No matching signature found"):
        verify(old, after)
    assert len(lower(after["headers"])["webhook-signature"].split(" ")) == 1
    (item,) = client.get("/v1/webhooks", headers=ADMIN).json()["items"]
    assert [k["id"] for k in item["secrets"]] == [res.json()["secret_id"]]

    missing = client.delete(f"/v1/webhooks/{hook['id']}/secrets/{old_id}", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    actions = [e["action"] for e in client.get("/v1/audit", headers=ADMIN).json()["items"]]
    assert actions.count("webhook_secret_added") == 2
    assert actions.count("webhook_secret_dropped") == 1
    app.state.ctx.db.dispose()


def test_a_malformed_whsec_secret_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    res = server.post(
        "/v1/webhooks",
        "root",
        {"url": "https://93.184.215.14/hook", "events": ["*"], "secret": "whsec_not*base64!!"},
    )
    assert res.status_code == 422 and res.json()["code"] == "invalid_request"
    assert "secret" in res.json()["message"] and "base64" in res.json()["message"]


@pytest.mark.parametrize("url", ["http://0:A/hook", "https://example.com:99999/hook"])
def test_a_url_whose_port_is_not_a_port_is_refused(server, url: str) -> None:  # type: ignore[no-untyped-def]
    res = server.post("/v1/webhooks", "root", {"url": url, "events": ["*"]})
    assert res.status_code == 422 and res.json()["code"] == "invalid_request"
    assert "not a valid http(s) URL" in res.json()["message"] and "Port" in res.json()["message"]


def test_delivery_that_keeps_failing_ends_failed(
    database_url: str, policy_file: Path, mlflow_model: MlflowModel, receiver: Receiver
) -> None:
    receiver.fail = 100
    app = hook_app(database_url, policy_file, mlflow_model.tracking_uri, webhook_allow_private=True)
    client = TestClient(app)
    hook = _hook(app, receiver)
    client.post("/v1/tokens", json={"user": "kim", "roles": ["approver"]}, headers=ADMIN)
    for _ in range(3):
        dispatch_due(app.state.ctx, max_attempts=3, backoff=0.001)
        time.sleep(0.01)
    (delivery,) = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=ADMIN).json()["items"]
    assert delivery["state"] == "failed" and delivery["attempts"] == 3
    assert delivery["last_status"] == 500 and "HTTP 500" in delivery["last_error"]
    assert len(receiver.calls) == 3
    app.state.ctx.db.dispose()


def test_deliveries_commit_and_roll_back_with_their_event(server) -> None:  # type: ignore[no-untyped-def]
    from registry_server.services import audit

    hook = server.post(
        "/v1/webhooks", "root", {"url": "http://93.184.215.14:9/hook", "events": ["*"]}
    ).json()

    def log() -> list[dict]:
        path = f"/v1/webhooks/{hook['id']}/deliveries"
        return server.client.get(path, headers=server.h("root")).json()["items"]

    before = len(log())
    with pytest.raises(RuntimeError, match="state change failed"), server.ctx.db.session() as s:
        audit.append(s, actor="ann", action="approval", payload={}, at=server.ctx.now())
        raise RuntimeError("state change failed")
    assert len(log()) == before
    with server.ctx.db.session() as s:
        event = audit.append(s, actor="ann", action="approval", payload={}, at=server.ctx.now())
        event_id = event.id
    after = log()
    assert len(after) == before + 1
    assert after[0]["audit_id"] == event_id and after[0]["state"] == "pending"
