"""The team topology on loopback, end to end: one promotion through every shared service.

- the registry server: two worker processes on PostgreSQL;
- an ``mlflow server`` on a second PostgreSQL database, its artifacts in an S3 bucket
  (``--artifacts-destination s3://...``, proxied: clients need no S3 credentials);
- the DVC remote in the same bucket (dvc-s3, ``endpointurl`` in the remote config);
- the repository's pipeline (``dvc repro``) and the library pointed at all of it by
  settings only (``MLOPS_*``, ``AWS_*``).

The S3 endpoint is moto's standalone server (``python -m moto.server``): a real HTTP S3
API on loopback, nothing mocked inside the process under test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import (
    BIN,
    free_port,
    fresh_pg_database,
    start_mlflow_server,
    stop_process,
    wait_for_http,
)
from tests.pipelines._repo import SOURCE, PipelineRepo, make_pipeline_repo
from tests.server._procs import ADMIN, RegistryProcess, start_registry, tokens

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BUCKET = "mlops-team"
MODEL = "iris-classifier"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "topology-test",
    "AWS_SECRET_ACCESS_KEY": "topology-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
USERS = {"pipeline": "requester", "ann": "approver", "bob": "approver"}


@dataclass(frozen=True)
class S3Store:
    """An S3-compatible endpoint on loopback (moto's standalone server)."""

    url: str
    proc: subprocess.Popen

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.url, **_boto_credentials())

    def keys(self, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        )
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


def start_s3(workdir: Path) -> S3Store:
    """moto's S3 server on a free port, with the bucket created."""
    port = free_port()
    log = workdir / "s3.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    store = S3Store(f"http://127.0.0.1:{port}", proc)
    try:
        wait_for_http(f"{store.url}/moto-api/", timeout=60, proc=proc)
    except (RuntimeError, TimeoutError):
        stop_process(proc)
        raise RuntimeError(log.read_text()[-4000:]) from None
    store.client().create_bucket(Bucket=BUCKET)
    return store


@dataclass(frozen=True)
class Topology:
    s3: S3Store
    mlflow_url: str
    mlflow_db: str
    registry: RegistryProcess
    registry_db: str
    repo: PipelineRepo
    promotion: dict[str, Any]  # the request after both approvals
    base: Path


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """Start every service, run the pipeline, push the data, approve the request twice."""
    base = tmp_path_factory.mktemp("topology")
    started, seconds = time.monotonic(), {}
    with contextlib.ExitStack() as stack:
        mlflow_db = stack.enter_context(fresh_pg_database("mlops_topology_mlflow"))
        registry_db = stack.enter_context(fresh_pg_database("mlops_topology_registry"))
        s3 = start_s3(base)
        stack.callback(stop_process, s3.proc)
        mlflow = start_mlflow_server(
            base / "mlflow",
            backend_store_uri=mlflow_db,
            artifacts_destination=f"s3://{BUCKET}/mlflow",
            env={**S3_ENV, "MLFLOW_S3_ENDPOINT_URL": s3.url},
        )
        stack.callback(stop_process, mlflow.proc)
        repo = make_pipeline_repo(
            base / "pipeline",
            **S3_ENV,
            MLOPS_TRACKING_URI=mlflow.url,
            PYTHONPATH=str(SOURCE),  # the stages import this checkout's library
        )
        registry = start_registry(
            base,
            database_url=registry_db,
            tracking_uri=mlflow.url,
            policy_file=repo.root / "promotion-policy.yaml",
            workers=2,
            reconcile_interval=0.5,
            # the verifier re-derives production's evidence from the DVC data on S3
            env={**os.environ, **S3_ENV},  # read access to the bucket
            dvc_remote_endpoint_url=s3.url,
        )
        stack.callback(registry.stop)
        seconds["services"] = round(time.monotonic() - started, 1)
        promotion = _promote(s3, registry, repo, seconds)
        seconds["total"] = round(time.monotonic() - started, 1)
        print("\ntopology set-up wall time (s):", seconds)
        yield Topology(s3, mlflow.url, mlflow_db, registry, registry_db, repo, promotion, base)


def _promote(
    s3: S3Store, registry: RegistryProcess, repo: PipelineRepo, seconds: dict[str, float]
) -> dict[str, Any]:
    """The user's side: an S3 DVC remote, ``dvc repro`` (its request stage pushes the data
    the server verifies from), ``dvc push``, two approvals once the server verified."""
    repo.dvc("remote", "add", "-f", "-d", "team", f"s3://{BUCKET}/dvc")
    repo.dvc("remote", "modify", "team", "endpointurl", s3.url)
    with registry.api() as api:
        headers = tokens(api, USERS)
    repo.env.update(
        MLOPS_REGISTRY_URL=registry.url,
        MLOPS_TOKEN=headers["pipeline"]["Authorization"].removeprefix("Bearer "),
    )
    started = time.monotonic()
    repo.dvc("repro")
    seconds["dvc repro"] = round(time.monotonic() - started, 1)
    repo.commit("pipeline run")
    repo.dvc("push", "-q")
    request = json.loads((repo.root / "reports" / "promotion.json").read_text())
    assert request["state"] == "verifying", request
    with registry.api() as api:
        deadline = time.monotonic() + 120
        while (found := _get(api, request["id"], headers["ann"]))["state"] == "verifying":
            assert time.monotonic() < deadline, found
            time.sleep(0.5)
        assert (found["state"], found["verification"]["state"]) == ("pending", "verified"), found
        for user in ("ann", "bob"):
            res = api.post(f"/v1/promotions/{request['id']}/approve", headers=headers[user])
            assert res.status_code == 200, res.text
        return api.get(f"/v1/promotions/{request['id']}", headers=headers["ann"]).json()


def _get(api: Any, promotion_id: int, headers: dict[str, str]) -> dict[str, Any]:
    res = api.get(f"/v1/promotions/{promotion_id}", headers=headers)
    assert res.status_code == 200, res.text
    return res.json()


def _mlflow(topology: Topology) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(topology.mlflow_url, registry_uri=topology.mlflow_url)


def _lock_md5(repo: PipelineRepo, path: str) -> str:
    lock = yaml.safe_load((repo.root / "dvc.lock").read_text())
    outs = [o for stage in lock["stages"].values() for o in stage.get("outs", [])]
    return next(o["md5"] for o in outs if o["path"] == path)


def test_two_approvals_move_the_alias_in_the_mlflow_server(topology: Topology) -> None:
    model = json.loads((topology.repo.root / "reports" / "model.json").read_text())
    assert topology.promotion["state"] == "promoted", topology.promotion
    mv = _mlflow(topology).get_model_version_by_alias(MODEL, "production")
    assert int(mv.version) == model["version"] == topology.promotion["version"]
    with topology.registry.api() as api:
        history = api.get(f"/v1/aliases/{MODEL}/production/history").json()["items"]
    assert [(h["version"], h["to"]) for h in history] == [(model["version"], None)]


def test_model_and_evidence_artifacts_live_in_the_bucket(topology: Topology) -> None:
    mv = _mlflow(topology).get_model_version_by_alias(MODEL, "production")
    experiment = _mlflow(topology).get_run(mv.run_id).info.experiment_id
    keys = topology.s3.keys("mlflow/")
    assert any(k.startswith(f"mlflow/{experiment}/") and k.endswith("/MLmodel") for k in keys)
    mlmodel = next(k for k in keys if k.endswith("/MLmodel"))
    body = topology.s3.client().get_object(Bucket=BUCKET, Key=mlmodel)["Body"].read()
    data = yaml.safe_load(body)["flavors"]["sklearn"]["pickled_model"]
    assert mlmodel.removesuffix("MLmodel") + data in keys  # the fitted estimator itself
    digest = topology.promotion["evidence_digest"]
    assert f"mlflow/{experiment}/{mv.run_id}/artifacts/mlops/evidence/{digest}.json" in keys
    # the MLflow server kept nothing on its local disk
    assert not [
        p for p in (topology.base / "mlflow").rglob("*") if p.is_file() and "log" not in p.name
    ]


def test_data_comes_back_from_the_s3_remote_by_md5_in_a_fresh_clone(topology: Topology) -> None:
    md5 = _lock_md5(topology.repo, "data/train.csv")
    assert f"dvc/files/md5/{md5[:2]}/{md5[2:]}" in topology.s3.keys("dvc/")
    clone = topology.base / "clone"
    topology.repo.run("git", "clone", "-q", str(topology.repo.root), str(clone))
    assert not (clone / "data" / "train.csv").exists()
    pulled = subprocess.run(
        [str(BIN / "dvc"), "pull", "-q", "data/train.csv"],
        cwd=clone,
        env=topology.repo.env,
        capture_output=True,
        text=True,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert hashlib.md5((clone / "data" / "train.csv").read_bytes()).hexdigest() == md5


def test_the_library_reads_the_pinned_data_from_the_s3_remote(
    topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    clone = topology.base / "library-clone"
    topology.repo.run("git", "clone", "-q", str(topology.repo.root), str(clone))
    rev = topology.repo.git("rev-parse", "HEAD")
    import pandas as pd

    import mlops

    frame = mlops.data.read_dataframe("data/train.csv", rev=rev, repo=clone)
    pd.testing.assert_frame_equal(frame, pd.read_csv(topology.repo.root / "data" / "train.csv"))


def test_both_servers_keep_their_state_in_postgres(topology: Topology) -> None:
    from sqlalchemy import create_engine, text

    def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql))]
        finally:
            engine.dispose()

    version = topology.promotion["version"]
    aliases = "SELECT name, alias, version FROM registered_model_aliases"
    assert rows(topology.mlflow_db, aliases) == [(MODEL, "production", version)]
    requests = "SELECT model, version, state FROM promotion_requests"
    assert rows(topology.registry_db, requests) == [(MODEL, version, "promoted")]
    with topology.registry.api() as api:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        events = api.get("/v1/audit?limit=100", headers=admin).json()["items"]
        assert api.get("/v1/audit/verify", headers=admin).json()["ok"] is True
    assert [e["action"] for e in events].count("promoted") == 1
    assert topology.registry.log_text().count("Started server process") == 2  # two workers
