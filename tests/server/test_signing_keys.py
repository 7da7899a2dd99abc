"""The server's signing key (a file or an environment secret, never the database), the CLI
that makes one, and checkpoints of the audit chain going out by webhook."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mlops.client import RegistryClient
from mlops.signatures import CHECKPOINT_TYPE, open_sealed
from registry_server.services.webhooks import dispatch_due
from registry_server.signing import (
    KEY_ENV,
    SigningKeyInvalid,
    SigningKeyMissing,
    write_key_file,
)
from tests.server._receiver import ADMIN, Receiver, hook_app, receiver
from tests.server.conftest import MlflowModel

__all__ = ["receiver"]  # the fixture, imported for the tests below


def test_postgres_without_a_signing_key_refuses_to_start(
    pg_url: str, policy_file: Path, mlflow_model: MlflowModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(SigningKeyMissing, match="No signing key is set for the database") as err:
        hook_app(pg_url, policy_file, mlflow_model.tracking_uri)
    assert err.value.code == "signing_key_missing"
    assert "mlops key create FILE" in err.value.hint


def test_sqlite_without_a_signing_key_keeps_one_beside_the_database(
    tmp_path: Path, policy_file: Path, mlflow_model: MlflowModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    url = f"sqlite:///{tmp_path / 'reg' / 'registry.db'}"
    first = hook_app(url, policy_file, mlflow_model.tracking_uri)
    key_file = tmp_path / "reg" / "registry.db.signing.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    public = TestClient(first).get("/v1/keys").json()["public_key"]
    first.state.ctx.db.dispose()

    again = hook_app(url, policy_file, mlflow_model.tracking_uri)

    assert TestClient(again).get("/v1/keys").json()["public_key"] == public
    secret = key_file.read_text().splitlines()[1].encode()  # the key's base64 body
    assert secret not in (tmp_path / "reg" / "registry.db").read_bytes()  # never in the db
    again.state.ctx.db.dispose()


def test_a_key_file_is_used_and_a_bad_one_is_refused(
    tmp_path: Path, policy_file: Path, mlflow_model: MlflowModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    key_file = tmp_path / "signing.pem"
    assert write_key_file(key_file) is True
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    app = hook_app(url, policy_file, mlflow_model.tracking_uri, signing_key_file=key_file)
    assert app.state.ctx.signing_key.source == str(key_file)
    app.state.ctx.db.dispose()

    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(SigningKeyInvalid, match="is not an unencrypted PEM private key"):
        hook_app(url, policy_file, mlflow_model.tracking_uri, signing_key_file=bad)
    with pytest.raises(SigningKeyMissing, match="does not exist"):
        hook_app(url, policy_file, mlflow_model.tracking_uri, signing_key_file=tmp_path / "no")


def test_key_create_writes_a_private_file_and_prints_the_public_key(tmp_path: Path) -> None:
    from mlops.cli import app

    path = tmp_path / "keys" / "signing.pem"
    res = CliRunner().invoke(app, ["key", "create", str(path)])

    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    public = (tmp_path / "keys" / "signing.pem.pub").read_text()
    assert public.startswith("-----BEGIN PUBLIC KEY-----") and public in res.output
    again = CliRunner().invoke(app, ["key", "create", str(path)])
    assert again.exit_code == 1
    assert "already exists; a signing key is never overwritten" in again.output


def test_checkpoints_every_n_events_go_out_by_webhook_and_verify_the_chain(
    tmp_path: Path, policy_file: Path, mlflow_model: MlflowModel, receiver: Receiver
) -> None:
    receiver.fail = 0
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    app = hook_app(
        url, policy_file, mlflow_model.tracking_uri, checkpoint_every=3, webhook_allow_private=True
    )
    client = TestClient(app)
    body = {"url": receiver.url, "events": ["audit_checkpoint"]}
    assert client.post("/v1/webhooks", json=body, headers=ADMIN).status_code == 201
    for i in range(6):  # each token is an audit event
        body = {"user": f"u{i}", "roles": ["approver"]}
        assert client.post("/v1/tokens", json=body, headers=ADMIN).status_code == 201

    dispatch_due(app.state.ctx, timeout=5, max_attempts=3, backoff=0.1)

    delivered = [json.loads(c["body"]) for c in receiver.ok()]
    assert [d["event"] for d in delivered] == ["audit_checkpoint", "audit_checkpoint"]
    public = client.get("/v1/keys").json()["public_key"]
    signed = [
        json.loads(open_sealed(d["payload"]["envelope"], public, CHECKPOINT_TYPE))
        for d in delivered
    ]
    assert [c["count"] for c in signed] == [3, 6]
    kept = tmp_path / "kept.json"
    kept.write_text(json.dumps(delivered[0]))  # kept as the webhook delivered it
    from mlops.cli._review import _checkpoint_envelope

    api = RegistryClient("http://testserver", token="hook-admin", http=client)
    check = api.verify_audit(checkpoint=_checkpoint_envelope(kept))
    # the server's policy at start, the webhook, six tokens
    assert check.ok and check.checkpoint["count"] == 3 and check.count == 8
    incremental = api.verify_audit(incremental=True)
    assert incremental.ok and incremental.mode == "incremental"
    assert incremental.checkpoint["count"] == 6
    app.state.ctx.db.dispose()
