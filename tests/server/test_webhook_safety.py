"""Webhook safety: targets on loopback, private, link-local and metadata addresses refused
when created and at connect time; secrets encrypted at rest with a key kept out of the
database; the key setting; plaintext secrets of the older schema migrated."""

from __future__ import annotations

import base64
import hashlib
import hmac
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import text

from registry_server.db.engine import Database, _alembic_config
from registry_server.secret_box import KEY_ENV, SecretKeyInvalid, SecretKeyMissing, load_box
from registry_server.services.webhook_targets import refused_reason
from registry_server.services.webhooks import dispatch_due
from tests.conftest import TEST_SECRET_KEY
from tests.server._receiver import ADMIN, Receiver, hook_app, receiver, verify
from tests.server.conftest import MlflowModel

__all__ = ["receiver"]  # the fixture, imported for the tests below

REFUSED = [
    "http://127.0.0.1:9/hook",
    "http://localhost:8080/hook",
    "http://api.localhost/hook",
    "http://[::1]/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://0.0.0.0:8080/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[64:ff9b::7f00:1]/hook",
    "http://2130706433/hook",  # 127.0.0.1 written as one number
    "http://0x7f.1/hook",  # and in hex
]


def test_private_targets_are_refused_at_creation(server) -> None:  # type: ignore[no-untyped-def]
    for url in REFUSED:
        res = server.post("/v1/webhooks", "root", {"url": url, "events": ["*"]})
        assert res.status_code == 422, (url, res.text)
        body = res.json()
        assert body["code"] == "webhook_target_refused", (url, body)
        assert (
            "webhook host" in body["message"]
            and "MLOPS_REGISTRY_WEBHOOK_ALLOW_PRIVATE" in (body["hint"])
        )
    assert server.client.get("/v1/webhooks", headers=server.h("root")).json()["items"] == []
    public = {"url": "https://93.184.215.14/h", "events": ["*"]}
    res = server.post("/v1/webhooks", "root", public)
    assert res.status_code == 201, res.text


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.2", "a loopback address"),
        ("169.254.169.254", "a link-local (cloud metadata) address"),
        ("10.0.0.1", "a private address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("2002:7f00:1::", "a loopback address"),
        ("224.0.0.1", "a multicast address"),
        ("100.64.0.1", "a reserved or shared address"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_refused_reason(address: str, reason: str | None) -> None:
    assert refused_reason(address) == reason


def test_connect_time_check_refuses_names_that_resolve_to_loopback(
    database_url: str, policy_file: Path, mlflow_model: MlflowModel, receiver: Receiver
) -> None:
    """Created while private targets were allowed (or while the name resolved elsewhere),
    then sent without: never contacted, and an open port logs exactly like a closed one."""
    from tests.conftest import free_port

    receiver.fail = 0
    app = hook_app(database_url, policy_file, mlflow_model.tracking_uri, webhook_allow_private=True)
    client = TestClient(app)
    urls = {
        "open": f"http://localhost:{receiver.port}/hook",
        "closed": f"http://localhost:{free_port()}/hook",
        "rebound": f"http://rebind.example.invalid:{receiver.port}/hook",
    }
    hooks = {}
    for kind, url in urls.items():
        res = client.post("/v1/webhooks", json={"url": url, "events": ["*"]}, headers=ADMIN)
        assert res.status_code == 201, res.text
        hooks[kind] = res.json()["id"]

    def rebinding(host: str, port: int, **kw: object) -> list[tuple]:
        if host == "rebind.example.invalid":  # one public answer, one loopback answer
            return [(2, 1, 6, "", ("93.184.215.14", port)), (2, 1, 6, "", ("127.0.0.1", port))]
        import socket

        return socket.getaddrinfo(host, port, **kw)  # type: ignore[arg-type]

    calls_before = len(receiver.calls)
    dispatch_due(app.state.ctx, allow_private=False, resolve=rebinding)
    assert len(receiver.calls) == calls_before  # nothing reached the receiver

    def last(kind: str) -> dict:
        path = f"/v1/webhooks/{hooks[kind]}/deliveries"
        items = client.get(path, headers=ADMIN).json()["items"]
        return next(d for d in items if d["event"] == "webhook_created")

    open_, closed, rebound = last("open"), last("closed"), last("rebound")
    for d in (open_, closed, rebound):
        assert d["state"] == "pending" and d["attempts"] == 1 and d["last_status"] is None
        assert d["last_error"].startswith("Refused: The webhook host")
    assert open_["last_error"] == closed["last_error"]
    assert "127.0.0.1" in open_["last_error"] or "::1" in open_["last_error"]
    assert "loopback" in open_["last_error"] and str(receiver.port) not in open_["last_error"]
    assert "'rebind.example.invalid' resolves to 127.0.0.1" in rebound["last_error"]

    # allowed again: the same transport connects to the address it resolved, and the
    # request still names the host it was given
    client.post(f"/v1/webhooks/deliveries/{open_['id']}/replay", headers=ADMIN)
    dispatch_due(app.state.ctx, allow_private=True)
    hosts = {c["headers"]["Host"] for c in receiver.calls[calls_before:]}
    assert f"localhost:{receiver.port}" in hosts
    app.state.ctx.db.dispose()


def _dump(database_url: str) -> str:
    """Everything in the database as text, as a dump would show it."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.split("///", 1)[1]) as conn:
            return "\n".join(conn.iterdump())
    import psycopg

    out = []
    with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql")) as conn:
        for table in ("webhooks", "webhook_secrets", "audit_events", "webhook_deliveries"):
            out += [row[0] for row in conn.execute(f"SELECT t::text FROM {table} t")]
    return "\n".join(out)


def test_secrets_are_encrypted_at_rest(
    database_url: str, policy_file: Path, mlflow_model: MlflowModel, receiver: Receiver
) -> None:
    receiver.fail = 0
    app = hook_app(database_url, policy_file, mlflow_model.tracking_uri, webhook_allow_private=True)
    client = TestClient(app)
    given = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    res = client.post(
        "/v1/webhooks",
        json={"url": receiver.url, "events": ["token_created"], "secret": given},
        headers=ADMIN,
    )
    assert res.status_code == 201 and res.json()["secret"] == given
    rotated = client.post(f"/v1/webhooks/{res.json()['id']}/secrets", headers=ADMIN)
    assert rotated.status_code == 201, rotated.text  # no body: a generated secret, 1 day
    client.post("/v1/tokens", json={"user": "kim", "roles": ["approver"]}, headers=ADMIN)
    dispatch_due(app.state.ctx)
    assert verify(given, receiver.last()) and verify(rotated.json()["secret"], receiver.last())

    dump = _dump(database_url)
    assert "webhook_secrets" in dump or "gAAAA" in dump  # the table is in the dump
    for secret in (given, rotated.json()["secret"]):
        raw = base64.b64decode(secret[6:])
        for form in (secret, secret[6:], raw.hex(), base64.urlsafe_b64encode(raw).decode()):
            assert form not in dump
    assert TEST_SECRET_KEY not in dump
    with app.state.ctx.db.read_sessions() as s:
        sealed = s.execute(text("SELECT ciphertext FROM webhook_secrets")).scalars().all()
    assert len(sealed) == 2
    other = "Zm9yLXRlc3RzLW9ubHktYS13cm9uZy1rZXktMzJieXQ="
    with pytest.raises(SecretKeyInvalid, match="cannot be decrypted with the configured"):
        load_box(database_url, other).open(sealed[0])
    app.state.ctx.db.dispose()


def test_postgres_without_a_key_refuses_to_start(
    pg_url: str, policy_file: Path, mlflow_model: MlflowModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(SecretKeyMissing, match=f"No {KEY_ENV} is set for the database") as err:
        hook_app(pg_url, policy_file, mlflow_model.tracking_uri)
    assert err.value.code == "secret_key_missing" and "Fernet.generate_key" in err.value.hint


def test_sqlite_without_a_key_keeps_one_beside_the_database(
    tmp_path: Path,
    policy_file: Path,
    mlflow_model: MlflowModel,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_ENV)
    receiver.fail = 0
    url = f"sqlite:///{tmp_path / 'reg' / 'registry.db'}"
    app = hook_app(url, policy_file, mlflow_model.tracking_uri, webhook_allow_private=True)
    key_file = tmp_path / "reg" / "registry.db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    hook = TestClient(app).post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["token_created"]}, headers=ADMIN
    )
    app.state.ctx.db.dispose()
    again = hook_app(url, policy_file, mlflow_model.tracking_uri, webhook_allow_private=True)
    TestClient(again).post("/v1/tokens", json={"user": "kim", "roles": ["approver"]}, headers=ADMIN)
    dispatch_due(again.state.ctx)  # a restart reads the same key file
    assert verify(hook.json()["secret"], receiver.last())["payload"]["user"] == "kim"
    assert key_file.read_text().strip() not in _dump(url)
    again.state.ctx.db.dispose()


def test_plaintext_secrets_of_the_older_schema_are_migrated(
    database_url: str, policy_file: Path, mlflow_model: MlflowModel, receiver: Receiver
) -> None:
    """A webhook made by the previous release keeps working: its receivers' secret verifies
    both the deprecated header and (in whsec_ form) the Standard Webhooks signature."""
    receiver.fail = 0
    old_secret = "the-secret-of-an-older-release"
    db = Database(database_url)
    db.upgrade()
    with db.engine.begin() as conn:
        cfg = _alembic_config(db.url)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    old_table = sa.table(
        "webhooks",
        *(sa.column(c) for c in ("id", "url", "secret", "created_by")),
        sa.column("events", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    with db.engine.begin() as conn:
        conn.execute(
            old_table.insert().values(
                id="oldhook",
                url=receiver.url,
                events=["token_created"],
                secret=old_secret,
                created_by="root",
                created_at=datetime(2026, 11, 30, 12, tzinfo=UTC),
            )
        )
    db.dispose()

    app = hook_app(database_url, policy_file, mlflow_model.tracking_uri, webhook_allow_private=True)
    assert old_secret not in _dump(database_url)
    TestClient(app).post("/v1/tokens", json={"user": "kim", "roles": ["approver"]}, headers=ADMIN)
    dispatch_due(app.state.ctx)
    call = receiver.last()
    assert verify("whsec_" + base64.b64encode(old_secret.encode()).decode(), call)
    mac = hmac.new(old_secret.encode(), call["body"], hashlib.sha256).hexdigest()
    assert {k.lower(): v for k, v in call["headers"].items()}["x-mlops-signature"] == (
        f"sha256={mac}"
    )

    with app.state.ctx.db.engine.begin() as conn:  # and back down: plaintext again
        cfg = _alembic_config(database_url)
        cfg.attributes["connection"] = conn
        cfg.attributes["secret_key"] = TEST_SECRET_KEY
        command.downgrade(cfg, "0005")
        secret = conn.execute(text("SELECT secret FROM webhooks WHERE id = 'oldhook'")).scalar()
    assert secret == old_secret
    app.state.ctx.db.dispose()
    db = Database(database_url)
    db.upgrade()  # leave the shared database at head
    db.dispose()


def test_the_key_setting_is_checked_and_can_be_rotated(
    tmp_path: Path, policy_file: Path, mlflow_model: MlflowModel
) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with pytest.raises(SecretKeyInvalid, match="is not a list of Fernet keys") as err:
        hook_app(url, policy_file, mlflow_model.tracking_uri, secret_key="not-a-fernet-key")
    assert "not-a-fernet-key" not in str(err.value)  # a key is never echoed
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_with_old = load_box(url, old).seal(b"whsec-bytes")
    both = load_box(url, f"{new}, {old}")
    assert both.open(sealed_with_old) == b"whsec-bytes"
    assert load_box(url, new).open(both.seal(b"again")) == b"again"  # the first key seals
    with pytest.raises(SecretKeyInvalid, match="cannot be decrypted"):
        load_box(url, new).open(sealed_with_old)


def test_workers_starting_together_share_one_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    monkeypatch.delenv(KEY_ENV)
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    code = (
        "import sys; from registry_server.secret_box import load_box; "
        "print(load_box(sys.argv[1]).seal(b'same').strip())"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    sealed = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    box = load_box(url)  # every worker sealed with the one key now in the file
    assert [box.open(token) for token in sealed] == [b"same"] * 6
    assert [f.name for f in tmp_path.iterdir()] == ["registry.db.key"]
