"""Webhooks end to end: a loopback receiver that fails first, the background dispatcher,
signatures, stable idempotency keys, the delivery log and replay."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from registry_server.app import create_app
from registry_server.settings import RegistrySettings
from registry_server.tokens import create_token
from tests.server.conftest import USERS, MlflowModel

SECRET = "a-webhook-secret-of-some-length"


@dataclass
class Receiver:
    """Answers 500 to the first ``fail`` calls, then 200; keeps every call."""

    fail: int
    calls: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            status = 500 if len(self.calls) < self.fail else 200
            self.calls.append({"headers": headers, "body": body, "status": status})
            return status

    def ok(self) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c["status"] == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(fail=2)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = rec.handle(dict(self.headers), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield rec
    httpd.shutdown()
    httpd.server_close()


def _wait(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


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
        assert hook.json()["secret"] == SECRET
        assert SECRET not in client.get("/v1/webhooks", headers=h("root")).text

        body = {"model": name, "version": version, "target": "production"}
        rid = client.post(
            "/v1/promotions", json={**body, "evidence_digest": digest}, headers=h("rita")
        ).json()["id"]
        refused = client.post(f"/v1/promotions/{rid}/approve", headers=h("rita"))
        assert refused.status_code == 403  # rolled back: no event, no delivery
        for user in ("ann", "bob"):
            client.post(f"/v1/promotions/{rid}/approve", headers=h(user))
        _wait(lambda: len(receiver.ok()) == 2)

        log = client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=h("root")).json()["items"]
        assert sorted(d["event"] for d in log) == ["promoted", "requested"]
        assert all(d["state"] == "delivered" and d["last_status"] == 200 for d in log)
        requested = next(d for d in log if d["event"] == "requested")

        # every call is signed over its body; the key is stable across retries
        by_id: dict[str, list[dict]] = {}
        for call in receiver.calls:
            headers = {k.lower(): v for k, v in call["headers"].items()}
            mac = hmac.new(SECRET.encode(), call["body"], hashlib.sha256).hexdigest()
            assert headers["x-mlops-signature"] == f"sha256={mac}"
            assert abs(int(headers["x-mlops-timestamp"]) - time.time()) < 120
            payload = json.loads(call["body"])
            assert payload["delivery"] == headers["x-mlops-delivery"]
            assert payload["event"] == headers["x-mlops-event"]
            by_id.setdefault(headers["x-mlops-delivery"], []).append(call)
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
        _wait(lambda: len(by_id_of(receiver, requested["id"])) == before + 1)
        assert by_id_of(receiver, requested["id"])[-1]["body"] == by_id[requested["id"]][0]["body"]

        gone = client.delete(f"/v1/webhooks/{hook_id}", headers=h("root"))
        assert gone.status_code == 204
        res = client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=h("root"))
        assert res.status_code == 404 and res.json()["code"] == "not_found"


def by_id_of(receiver: Receiver, delivery_id: str) -> list[dict]:
    with receiver.lock:
        return [
            c
            for c in receiver.calls
            if {k.lower(): v for k, v in c["headers"].items()}["x-mlops-delivery"] == delivery_id
        ]


def test_delivery_that_keeps_failing_ends_failed(
    database_url: str, policy_file: Path, mlflow_model: MlflowModel, receiver: Receiver
) -> None:
    from registry_server.services.webhooks import dispatch_due

    receiver.fail = 100
    settings = RegistrySettings(
        database_url=database_url,
        policy_path=policy_file,
        tracking_uri=mlflow_model.tracking_uri,
        reconcile_interval=0,
        webhook_interval=0,
        admin_token="hook-admin",
        ui=False,
    )
    app = create_app(settings)
    client = TestClient(app)
    admin = {"Authorization": "Bearer hook-admin"}
    hook = client.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["token_created"]}, headers=admin
    ).json()
    client.post("/v1/tokens", json={"user": "kim", "roles": ["approver"]}, headers=admin)
    for _ in range(3):
        dispatch_due(app.state.ctx, max_attempts=3, backoff=0.001)
        time.sleep(0.01)
    (delivery,) = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=admin).json()["items"]
    assert delivery["state"] == "failed" and delivery["attempts"] == 3
    assert delivery["last_status"] == 500 and "HTTP 500" in delivery["last_error"]
    assert len(receiver.calls) == 3
    app.state.ctx.db.dispose()


def test_deliveries_commit_and_roll_back_with_their_event(server) -> None:  # type: ignore[no-untyped-def]
    from registry_server.services import audit

    hook = server.post(
        "/v1/webhooks", "root", {"url": "http://127.0.0.1:9/hook", "events": ["*"]}
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
