"""``mlops verify NAME@ALIAS``: offline, with only the public key, against real MLflow and a
real built Bento, after a real promotion through the registry server (SQLite).

One Bento is built for the module; each tampering test restores what it changed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import mlops
from mlops import packaging, registry
from mlops.errors import (
    AttestationMissing,
    VerifyApprovalsInsufficient,
    VerifyBentoMismatch,
    VerifyModelArtifactMismatch,
    VerifySignatureInvalid,
)
from mlops.signatures import IN_TOTO, generate_key, load_private_pem, public_pem, seal
from registry_server.app import create_app
from registry_server.settings import RegistrySettings
from registry_server.tokens import create_token
from tests import _evidence
from tests._verify_cli import run_verify
from tests.conftest import SKLEARN_REQUIREMENTS, TEST_SIGNING_KEY
from tests.server.conftest import POLICY, USERS

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Promoted:
    name: str
    version: int
    bento_tag: str
    key_file: Path
    request_id: int
    client: TestClient
    tokens: dict[str, str]

    @property
    def ref(self) -> str:
        return f"{self.name}@production"


def _register(name: str) -> tuple[int, Any]:
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlops import tracking

    x, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=300).fit(x, y)
    with tracking.start_run("attestation"):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x, model.predict(x)),
            pip_requirements=SKLEARN_REQUIREMENTS,
        )
    return registry.register(info.model_uri, name).version, x


def _bundle(name: str, version: int, run_id: str, package: dict[str, Any]) -> dict[str, Any]:
    bundle = _evidence.bundle(name, version, run_id)
    # the smoke test is covered by tests/test_packaging.py; here the Bento is built only
    smoke = {"passed": True, "rows": 3, "mismatches": 0, "error": None, "seconds": 0.5}
    bundle["package"] = {**package, "smoke": smoke, "passed": True}
    return bundle


@pytest.fixture(scope="module")
def promoted(mlflow_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Promoted]:
    import mlflow
    from mlflow.tracking import MlflowClient

    name = f"att-{uuid.uuid4().hex[:8]}"
    version, features = _register(name)
    report = packaging.package(name, version, sample=features.head(3), smoke=False)
    assert report.bento_digest is not None
    uri = f"sqlite:///{mlflow_home / 'mlflow.db'}"
    mv = registry.get(name, version)
    digest = _evidence.record(
        MlflowClient(uri), mv.run_id, _bundle(name, version, mv.run_id, report.to_dict())
    )
    tmp = tmp_path_factory.mktemp("attestation")
    with _promoted_by_the_server(name, version, digest, uri, tmp) as (rid, client, tokens):
        mlflow.set_tracking_uri(uri)
        yield Promoted(name, version, report.bento_tag, tmp / "registry.pub", rid, client, tokens)


@contextlib.contextmanager
def _promoted_by_the_server(
    name: str, version: int, digest: str, tracking_uri: str, tmp: Path
) -> Iterator[tuple[int, TestClient, dict[str, str]]]:
    """Request, approve (ann, bob) and so promote ``name`` v``version`` to production
    through a registry server on SQLite; its public key goes to ``tmp/registry.pub``.
    Yields the request id, the server's test client and the users' tokens."""
    (tmp / "policy.yaml").write_text(POLICY)
    settings = RegistrySettings(
        database_url=f"sqlite:///{tmp / 'registry.db'}",
        policy_path=tmp / "policy.yaml",
        tracking_uri=tracking_uri,
        reconcile_interval=0,
        webhook_interval=0,
        ui=False,
        governed_models=f"{name}*",
    )
    app = create_app(settings)
    with TestClient(app) as client:
        with app.state.ctx.db.session() as s:
            tokens = {u: create_token(s, u, roles).token for u, roles in USERS.items()}
        body = {"model": name, "version": version, "target": "production"}
        body["evidence_digest"] = digest
        res = client.post("/v1/promotions", json=body, headers=_h(tokens, "rita"))
        assert res.status_code == 201, res.json()
        rid = res.json()["id"]
        for user in ("ann", "bob"):
            res = client.post(f"/v1/promotions/{rid}/approve", json={}, headers=_h(tokens, user))
        assert res.json()["state"] == "promoted", res.json()
        (tmp / "registry.pub").write_text(client.get("/v1/keys").json()["public_key"])
        yield rid, client, tokens


def _h(tokens: dict[str, str], user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[user]}"}


@contextlib.contextmanager
def _edited(path: Path, data: bytes) -> Iterator[None]:
    """Replace a file's bytes for the block, then put the original back."""
    original = path.read_bytes()
    path.write_bytes(data)
    try:
        yield
    finally:
        path.write_bytes(original)


def _envelope_file(p: Promoted) -> Path:
    mv = registry.get(p.name, p.version)
    tag = mv.tags["mlops.attestation.production"]
    run = mlops.registry._client().get_run(mv.run_id)
    root = Path(run.info.artifact_uri.removeprefix("file://"))
    return root / "mlops" / "attestations" / f"{tag}.json"


def test_happy_path_verifies_every_link(promoted: Promoted) -> None:
    started = time.monotonic()
    checked = mlops.verify(promoted.ref, key=promoted.key_file)
    seconds = time.monotonic() - started

    assert checked.version == promoted.version
    assert checked.action == "promote"
    assert [n for n, _ in checked.links] == [
        "attestation",
        "signature",
        "alias",
        "model_artifact",
        "bento",
        "evidence",
        "data",
        "approvals",
    ]
    assert dict(checked.links)["approvals"] == "2/2 by ann, bob"
    assert promoted.bento_tag in dict(checked.links)["bento"]
    assert seconds < 10, seconds  # the benchmark measures it; this only guards a blow-up


def test_the_cli_verifies_and_names_the_failing_link(promoted: Promoted, tmp_path: Path) -> None:
    from mlops.cli import app

    ok = CliRunner().invoke(app, ["verify", promoted.ref, "--key", str(promoted.key_file)])
    assert ok.exit_code == 0, ok.output
    assert f"Verified {promoted.ref} = v{promoted.version}" in ok.output

    wrong = tmp_path / "other.pub"
    wrong.write_text(public_pem(generate_key()))
    res = CliRunner().invoke(app, ["verify", promoted.ref, "--key", str(wrong)])
    assert res.exit_code == 1
    assert "verify_signature: link 'signature' failed" in res.output
    assert "mlops key create" in res.output  # the CLI hint names a command


def test_a_wrong_key_fails_the_signature_link(promoted: Promoted, tmp_path: Path) -> None:
    wrong = tmp_path / "other.pub"
    wrong.write_text(public_pem(generate_key()))

    with pytest.raises(VerifySignatureInvalid, match="does not verify with key") as err:
        mlops.verify(promoted.ref, key=wrong)
    assert err.value.details["link"] == "signature"


def test_a_forged_approval_fails_the_signature_link(promoted: Promoted) -> None:
    path = _envelope_file(promoted)
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["approvals"][1]["user"] = "mallory"  # someone else's approval
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()

    with (
        _edited(path, json.dumps(envelope).encode()),
        pytest.raises(VerifySignatureInvalid, match="does not verify"),
    ):
        mlops.verify(promoted.ref, key=promoted.key_file)


def test_too_few_approvals_fail_the_approvals_link_even_when_signed(promoted: Promoted) -> None:
    """A statement signed with the server's key whose approvals miss the signed rules."""
    path = _envelope_file(promoted)
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["approvals"] = statement["predicate"]["approvals"][:1]
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    key = load_private_pem(TEST_SIGNING_KEY, where="test key")
    resigned = seal(key, payload, IN_TOTO)
    import hashlib

    digest = hashlib.sha256(payload).hexdigest()
    client = mlops.registry._client()
    mv = registry.get(promoted.name, promoted.version)
    tag = "mlops.attestation.production"
    client.log_text(mv.run_id, json.dumps(resigned), f"mlops/attestations/{digest}.json")
    client.set_model_version_tag(promoted.name, str(promoted.version), tag, digest)
    try:
        with pytest.raises(VerifyApprovalsInsufficient, match="reach 1 of the 2") as err:
            mlops.verify(promoted.ref, key=promoted.key_file)
        assert err.value.details["link"] == "approvals"
    finally:
        client.set_model_version_tag(promoted.name, str(promoted.version), tag, mv.tags[tag])


def _model_file(p: Promoted) -> Path:
    mv = registry.get(p.name, p.version)
    files = Path(mv.download_uri.removeprefix("file://"))
    return next(f for f in files.iterdir() if f.suffix in {".skops", ".pkl"})


def test_a_swapped_model_artifact_fails_the_model_link(promoted: Promoted) -> None:
    model_file = _model_file(promoted)

    with (
        _edited(model_file, model_file.read_bytes() + b"\0"),
        pytest.raises(VerifyModelArtifactMismatch, match="the model artifact was swapped"),
    ):
        mlops.verify(promoted.ref, key=promoted.key_file)


def test_a_tampered_bento_fails_the_bento_link(promoted: Promoted) -> None:
    from mlops.packaging._bento_runtime import _store_path

    service = next(_store_path(promoted.bento_tag).joinpath("src").rglob("*.py"))

    with (
        _edited(service, service.read_bytes() + b"\nprint('tampered')\n"),
        pytest.raises(VerifyBentoMismatch, match="changed or rebuilt after the decision") as err,
    ):
        mlops.verify(promoted.ref, key=promoted.key_file)
    assert err.value.details["link"] == "bento"
    assert mlops.verify(promoted.ref, key=promoted.key_file).version == promoted.version


def test_an_alias_set_outside_the_server_has_no_attestation(promoted: Promoted) -> None:
    registry.set_alias(promoted.name, "shadow", promoted.version)

    with pytest.raises(AttestationMissing, match="carries no signed decision for 'shadow'"):
        mlops.verify(f"{promoted.name}@shadow", key=promoted.key_file)


def test_the_attestation_route_serves_what_mlflow_holds(promoted: Promoted) -> None:
    res = promoted.client.get(
        f"/v1/promotions/{promoted.request_id}/attestation", headers=_h(promoted.tokens, "ann")
    )

    assert res.status_code == 200, res.json()
    assert json.loads(_envelope_file(promoted).read_text()) == res.json()["envelope"]


def test_the_benchmark_helper_times_the_command(promoted: Promoted) -> None:
    from benchmarks._attestation import time_verify

    result = time_verify(promoted.ref, key=promoted.key_file, repeat=2)

    print(result)
    assert result["verify_cli_s"] > result["verify_call_s"] > 0
    with pytest.raises(RuntimeError, match=r"mlops verify .* failed"):
        time_verify(f"{promoted.name}@shadow-none", key=promoted.key_file, repeat=1)


# --- MLflow read without importing it, and through MLflow where the reader cannot -----------
def test_the_command_reads_the_sqlite_store_without_importing_mlflow(promoted: Promoted) -> None:
    from mlops._mlflow_reader import open_reader
    from mlops._mlflow_reader._sqlite import _SqliteReader

    with open_reader() as reads:  # so the tests above went through the fast reader too
        assert isinstance(reads, _SqliteReader)
    key = str(promoted.key_file)

    res, imported = run_verify(promoted.ref, "--key", key)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Verified {promoted.ref} = v{promoted.version}" in res.stdout
    assert imported is False

    model_file = _model_file(promoted)
    with _edited(model_file, model_file.read_bytes() + b"\0"):
        res, imported = run_verify(promoted.ref, "--key", key)
    assert res.returncode == 1
    assert "verify_model_artifact: link 'model_artifact' failed" in res.stdout + res.stderr
    assert imported is False


def test_a_store_uri_the_reader_does_not_take_is_verified_through_mlflow(
    promoted: Promoted, mlflow_home: Path
) -> None:
    uri = f"sqlite+pysqlite:///{mlflow_home / 'mlflow.db'}"  # SQLAlchemy's dialect+driver form

    res, imported = run_verify(
        promoted.ref, "--key", str(promoted.key_file), env={"MLOPS_TRACKING_URI": uri}
    )

    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Verified {promoted.ref} = v{promoted.version}" in res.stdout
    assert imported is True


def test_a_schema_without_a_column_the_reader_reads_is_verified_through_mlflow(
    promoted: Promoted, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops import _mlflow_reader
    from mlops._mlflow_reader import _sqlite

    # as if the store lacked a column the reader reads (a later MLflow schema)
    wanted = {**_sqlite._COLUMNS}
    wanted["model_versions"] = (*wanted["model_versions"], "storage_location_v2")
    monkeypatch.setattr(_sqlite, "_COLUMNS", wanted)

    with _mlflow_reader.open_reader() as reads:
        assert isinstance(reads, _mlflow_reader.MlflowReads)
    assert mlops.verify(promoted.ref, key=promoted.key_file).version == promoted.version


def test_a_store_at_another_migration_is_left_to_mlflow(
    mlflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops._mlflow_reader import MlflowReads, open_reader

    copy = tmp_path / "mlflow.db"
    shutil.copy(mlflow_home / "mlflow.db", copy)
    db = sqlite3.connect(copy)
    db.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    db.commit()
    db.close()
    monkeypatch.setenv("MLOPS_TRACKING_URI", f"sqlite:///{copy}")

    with open_reader() as reads:  # MLflow refuses such a store; it says so itself
        assert isinstance(reads, MlflowReads)


def test_model_files_the_reader_cannot_reach_are_checked_through_mlflow(
    promoted: Promoted, mlflow_home: Path
) -> None:
    from mlops._mlflow_reader import Unanswered, open_reader

    model_file = _model_file(promoted)
    version = (promoted.name, promoted.version)
    where = "WHERE name = ? AND version = ?"
    db = sqlite3.connect(mlflow_home / "mlflow.db")
    query = f"SELECT storage_location FROM model_versions {where}"
    (location,) = db.execute(query, version).fetchone()
    # the same folder, named with a host: MLflow's local store reads it, the reader does not
    elsewhere = location.replace("file:///", "file://localhost/")
    db.execute(f"UPDATE model_versions SET storage_location = ? {where}", (elsewhere, *version))
    db.commit()
    try:
        with open_reader() as reads:
            mv = reads.resolve(promoted.name, "production")
            assert mv.download_uri == elsewhere != location
            with pytest.raises(Unanswered, match="file://localhost/"):
                reads.model_digest(mv)
        assert mlops.verify(promoted.ref, key=promoted.key_file).version == promoted.version
        with (
            _edited(model_file, model_file.read_bytes() + b"\0"),
            pytest.raises(VerifyModelArtifactMismatch, match="the model artifact was swapped"),
        ):
            mlops.verify(promoted.ref, key=promoted.key_file)
    finally:
        db.execute(f"UPDATE model_versions SET storage_location = ? {where}", (location, *version))
        db.commit()
        db.close()


# --- over HTTP: a real `mlflow server`, read through its REST API and artifact proxy -------
@dataclass(frozen=True)
class PromotedOverHttp:
    ref: str
    key_file: Path
    url: str
    model_file: Path
    evidence_file: Path


@pytest.fixture(scope="module")
def promoted_http(
    mlflow_server: Any, mlflow_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> PromotedOverHttp:
    """A version on the MLflow server promoted by a registry server reading that MLflow;
    its evidence names a Bento that is not built (the tests pass --no-bento)."""
    from urllib.parse import urlparse

    from mlflow.tracking import MlflowClient

    from mlops.tracking import configure

    name = f"att-http-{uuid.uuid4().hex[:8]}"
    configure(tracking_uri=mlflow_server.url)
    try:
        version, _ = _register(name)
        mv = registry.get(name, version)
        run = registry._client().get_run(mv.run_id)
    finally:
        configure()  # back to the session's SQLite store
    package = {"bento_tag": f"{name}:v{version}", "bento_digest": "0" * 64, "model_tag": None}
    bundle = _bundle(name, version, mv.run_id, package)
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    digest = _evidence.record(client, mv.run_id, bundle)
    tmp = tmp_path_factory.mktemp("attestation-http")
    with _promoted_by_the_server(name, version, digest, mlflow_server.url, tmp):
        pass
    served = mlflow_server.backend.parent / "artifacts"  # the server's artifact destination
    files = served / urlparse(mv.download_uri).path.lstrip("/")
    run_root = served / urlparse(run.info.artifact_uri).path.lstrip("/")
    return PromotedOverHttp(
        ref=f"{name}@production",
        key_file=tmp / "registry.pub",
        url=mlflow_server.url,
        model_file=next(f for f in files.iterdir() if f.suffix in {".skops", ".pkl"}),
        evidence_file=run_root / "mlops" / "evidence" / f"{digest}.json",
    )


def _verify_over_http(p: PromotedOverHttp) -> tuple[Any, bool]:
    key = str(p.key_file)
    return run_verify(p.ref, "--key", key, "--no-bento", env={"MLOPS_TRACKING_URI": p.url})


def test_the_command_verifies_over_http_without_importing_mlflow(
    promoted_http: PromotedOverHttp,
) -> None:
    res, imported = _verify_over_http(promoted_http)

    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Verified {promoted_http.ref}" in res.stdout
    assert "model_artifact" in res.stdout and "bento" not in res.stdout
    assert imported is False


def test_a_swapped_model_artifact_is_caught_over_http(promoted_http: PromotedOverHttp) -> None:
    model_file = promoted_http.model_file

    with _edited(model_file, model_file.read_bytes() + b"\0"):
        res, imported = _verify_over_http(promoted_http)

    assert res.returncode == 1
    assert "verify_model_artifact: link 'model_artifact' failed" in res.stdout + res.stderr
    assert "the model artifact was swapped" in res.stdout + res.stderr
    assert imported is False


def test_edited_evidence_is_caught_over_http(promoted_http: PromotedOverHttp) -> None:
    path = promoted_http.evidence_file
    bundle = json.loads(path.read_bytes())
    bundle["evaluation"]["metrics"]["candidate"]["accuracy"] = 0.99  # a better story, unsigned

    with _edited(path, _evidence.canonical(bundle)):
        res, imported = _verify_over_http(promoted_http)

    assert res.returncode == 1
    assert "verify_evidence: link 'evidence' failed" in res.stdout + res.stderr
    assert imported is False
