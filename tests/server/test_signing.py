"""Signed decisions and signed audit checkpoints, on SQLite and PostgreSQL, real MLflow.

Every promotion and rollback leaves an in-toto Statement in a DSSE envelope (stored, served
and attached to the model version in MLflow); the audit chain's head is signed, so deleting
the newest events or rewriting the chain with recomputed hashes is detected.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from sqlalchemy import select, text

from mlops.errors import RegistryUnavailable
from mlops.signatures import CHECKPOINT_TYPE, IN_TOTO, open_sealed
from registry_server.db.models import AuditEvent
from registry_server.services.audit import GENESIS, event_hash
from tests.server.conftest import Server


def _promote(server: Server, name: str) -> tuple[int, int, str]:
    version = server.model.register(name)
    digest = server.model.record(name, version)
    res = server.request(name, version, digest)
    assert res.status_code == 201, res.json()
    rid = res.json()["id"]
    for user in ("ann", "bob"):
        res = server.approve(rid, user)
    assert res.json()["state"] == "promoted", res.json()
    return rid, version, digest


def test_a_move_attaches_its_own_decision_and_leaves_the_others_to_the_retry(
    server: Server, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load each move attached every decision not yet on MLflow, the ones other
    workers were attaching at that moment too: four uploads and tags per promotion."""
    from registry_server.services import attestations

    gateway = server.ctx.gateway
    real = gateway.attach_attestation
    attached: list[str] = []

    def down(*args: object) -> None:
        raise RegistryUnavailable("MLflow is unreachable (outage).")

    monkeypatch.setattr(gateway, "attach_attestation", down)
    first, _, _ = _promote(server, f"{name}-a")  # moved, its decision not on MLflow yet

    def counting(model: str, *args: object) -> None:
        attached.append(model)
        real(model, *args)

    monkeypatch.setattr(gateway, "attach_attestation", counting)
    second, _, _ = _promote(server, f"{name}-b")

    def on_mlflow(rid: int) -> bool:
        res = server.client.get(f"/v1/promotions/{rid}/attestation", headers=server.h("ann"))
        return res.json()["attached"]

    assert attached == [f"{name}-b"]
    assert (on_mlflow(first), on_mlflow(second)) == (False, True)
    assert attestations.attach_pending(server.ctx) >= 1  # the background pass's retry
    assert f"{name}-a" in attached[1:] and on_mlflow(first) is True


def _public_key(server: Server) -> str:
    res = server.client.get("/v1/keys")
    assert res.status_code == 200, res.json()
    return res.json()["public_key"]


def _statement(envelope: dict, public_key: str) -> dict:
    return json.loads(open_sealed(envelope, public_key, IN_TOTO))


def test_promotion_is_signed_served_and_attached_to_the_version(server: Server, name: str) -> None:
    rid, version, digest = _promote(server, name)

    res = server.client.get(f"/v1/promotions/{rid}/attestation", headers=server.h("ann"))

    assert res.status_code == 200, res.json()
    body = res.json()
    assert body["attached"] is True
    statement = _statement(body["envelope"], _public_key(server))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    (subject,) = [s for s in statement["subject"] if s["name"] == f"models:/{name}/{version}"]
    assert len(subject["digest"]["sha256"]) == 64
    predicate = statement["predicate"]
    assert predicate["action"] == "promote"
    assert predicate["alias"] == {
        "model": name,
        "alias": "production",
        "version": version,
        "previous_version": None,
    }
    assert predicate["evidence"]["digest"] == digest
    assert predicate["policy"]["digest"] == server.ctx.policy.digest
    assert predicate["policy"]["approvals"]["count"] == 2
    assert [(a["user"], a["digest"]) for a in predicate["approvals"]] == [
        ("ann", digest),
        ("bob", digest),
    ]
    assert predicate["request"] == {"id": rid, "requester": "rita"}
    # attached in MLflow: the version's tag names the envelope stored in its run
    mv = server.model.client().get_model_version(name, str(version))
    assert mv.tags["mlops.attestation.production"] == body["digest"]
    payload = base64.b64decode(body["envelope"]["payload"])
    assert hashlib.sha256(payload).hexdigest() == body["digest"]


def test_attestation_needs_a_token_and_a_promoted_request(server: Server, name: str) -> None:
    version = server.model.register(name)
    rid = server.request(name, version, server.model.record(name, version)).json()["id"]

    assert server.client.get(f"/v1/promotions/{rid}/attestation").status_code == 401
    res = server.client.get(f"/v1/promotions/{rid}/attestation", headers=server.h("ann"))
    assert res.status_code == 404, res.json()
    assert "has no signed decision" in res.json()["message"]


def test_rollback_is_signed_with_the_previous_holder(server: Server, name: str) -> None:
    _, v1, digest1 = _promote(server, name)
    _, v2, _ = _promote(server, name)

    res = server.post(f"/v1/aliases/{name}/production/rollback", "bob", {"comment": "latency"})

    assert res.status_code == 200, res.json()
    mv = server.model.client().get_model_version(name, str(v1))
    tag = mv.tags["mlops.attestation.production"]
    with server.ctx.db.read_sessions() as s:
        envelope = s.scalar(text("SELECT envelope FROM attestations WHERE digest = :d"), {"d": tag})
    predicate = _statement(json.loads(envelope), _public_key(server))["predicate"]
    assert predicate["action"] == "rollback"
    assert predicate["alias"]["version"] == v1
    assert predicate["alias"]["previous_version"] == v2
    assert predicate["actor"] == "bob"
    assert predicate["evidence"]["digest"] == digest1
    assert {a["user"] for a in predicate["approvals"]} == {"ann", "bob"}


def _verify(server: Server, **params: str) -> dict:
    res = server.client.get("/v1/audit/verify", params=params, headers=server.h("root"))
    assert res.status_code == 200, res.json()
    return res.json()


def test_each_promotion_signs_the_chain_head(server: Server, name: str) -> None:
    _promote(server, name)

    res = server.client.get("/v1/audit/checkpoint", headers=server.h("root"))

    assert res.status_code == 200, res.json()
    cp = res.json()
    body = json.loads(open_sealed(cp["envelope"], _public_key(server), CHECKPOINT_TYPE))
    with server.ctx.db.read_sessions() as s:
        head = s.scalar(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1))
        count = s.scalar(text("SELECT count(*) FROM audit_events"))
    assert head.action == "promoted"
    assert (body["count"], body["head_id"], body["head_hash"]) == (count, head.id, head.hash)
    full = _verify(server)
    assert (full["ok"], full["mode"], full["count"]) == (True, "full", count)
    incremental = _verify(server, incremental="true")
    assert (incremental["ok"], incremental["mode"]) == (True, "incremental")


def test_deleting_the_newest_events_is_detected(server: Server, name: str) -> None:
    _promote(server, name)
    with server.ctx.db.session() as s:
        newest = s.scalar(text("SELECT max(id) FROM audit_events"))
        s.execute(text("DELETE FROM audit_events WHERE id >= :i"), {"i": newest - 1})

    result = _verify(server)

    assert result["ok"] is False
    assert "events were deleted" in result["reason"]
    incremental = _verify(server, incremental="true")
    assert incremental["ok"] is False
    assert "gone or rewritten" in incremental["reason"]


def _rewrite_with_recomputed_hashes(server: Server) -> int:
    """Edit the first event's actor and recompute every hash after it, as a database
    writer could: the chain alone still verifies."""
    with server.ctx.db.session() as s:
        rows = list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))
        rows[0].actor = "mallory"
        prev = GENESIS
        for row in rows:
            event = {
                "at": row.at,
                "actor": row.actor,
                "action": row.action,
                "payload": json.loads(row.payload),
            }
            row.prev_hash, row.hash = prev, event_hash(prev, event)
            prev = row.hash
        return rows[0].id


def test_rewriting_the_chain_with_recomputed_hashes_is_detected(server: Server, name: str) -> None:
    _promote(server, name)
    _rewrite_with_recomputed_hashes(server)

    result = _verify(server)

    assert result["ok"] is False
    assert "differs from the signed checkpoint: the chain was rewritten" in result["reason"]
    assert _verify(server, incremental="true")["ok"] is False


def test_a_checkpoint_kept_outside_still_catches_a_rewrite(server: Server, name: str) -> None:
    _promote(server, name)
    kept = server.client.get("/v1/audit/checkpoint", headers=server.h("root")).json()
    _rewrite_with_recomputed_hashes(server)
    with server.ctx.db.session() as s:  # the writer deletes the stored checkpoints too
        s.execute(text("DELETE FROM audit_checkpoints"))
    assert _verify(server)["ok"] is True  # nothing left inside to compare with

    res = server.post("/v1/audit/verify", "root", {"envelope": kept["envelope"]})

    assert res.status_code == 200, res.json()
    assert res.json()["ok"] is False
    assert "the chain was rewritten" in res.json()["reason"]


def test_a_forged_checkpoint_fails_the_verification(server: Server, name: str) -> None:
    _promote(server, name)
    kept = server.client.get("/v1/audit/checkpoint", headers=server.h("root")).json()
    envelope = dict(kept["envelope"])
    body = json.loads(base64.b64decode(envelope["payload"]))
    body["count"] = 1
    envelope["payload"] = base64.b64encode(json.dumps(body).encode()).decode()

    res = server.post("/v1/audit/verify", "root", {"envelope": envelope})

    assert res.status_code == 200, res.json()
    assert res.json()["ok"] is False
    assert "the checkpoint given is not signed by this server" in res.json()["reason"]
    assert "does not verify" in res.json()["reason"]
