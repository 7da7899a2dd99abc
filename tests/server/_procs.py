"""Real processes for the multi-process tests: the registry server (``registry_server.run``)
and an ``mlflow server`` that can be stopped and started again on the same port and store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port, start_mlflow_server, stop_process, wait_for_http

ADMIN = "proc-admin-token"


@dataclass
class RegistryProcess:
    proc: subprocess.Popen
    url: str
    log: Path
    port: int

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def stop(self) -> None:
        stop_process(self.proc)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_registry(
    workdir: Path,
    *,
    database_url: str,
    tracking_uri: str,
    policy_file: Path,
    port: int | None = None,
    log_name: str = "registry.log",
    **settings: Any,
) -> RegistryProcess:
    """``registry_server.run()`` in a child process configured by MLOPS_REGISTRY_* env."""
    port = port or free_port()
    env = {
        **os.environ,
        "MLOPS_REGISTRY_DATABASE_URL": database_url,
        "MLOPS_REGISTRY_POLICY_PATH": str(policy_file),
        "MLOPS_REGISTRY_TRACKING_URI": tracking_uri,
        "MLOPS_REGISTRY_PORT": str(port),
        "MLOPS_REGISTRY_ADMIN_TOKEN": ADMIN,
        "MLOPS_REGISTRY_UI": "false",
        "MLOPS_REGISTRY_LOG_LEVEL": "info",
        "MLOPS_REGISTRY_WEBHOOK_INTERVAL": "0",
        # an unreachable MLflow must fail fast, not after minutes of client retries
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }
    env.pop("MLOPS_REGISTRY_FAULT_POINT", None)
    env.update({f"MLOPS_REGISTRY_{k.upper()}": str(v) for k, v in settings.items()})
    log = workdir / log_name
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import registry_server; registry_server.run()"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RegistryProcess(proc, f"http://127.0.0.1:{port}", log, port)
    try:
        wait_for_http(f"{server.url}/readyz", timeout=120, proc=proc)
    except (RuntimeError, TimeoutError):
        stop_process(proc)
        raise RuntimeError(log.read_text()[-4000:]) from None
    return server


def tokens(api: httpx.Client, users: dict[str, str]) -> dict[str, dict[str, str]]:
    """A bearer header per user (``users``: name -> role), issued by the admin token."""
    out = {}
    for user, role in users.items():
        res = api.post(
            "/v1/tokens",
            json={"user": user, "roles": [role]},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert res.status_code == 201, res.text
        out[user] = {"Authorization": f"Bearer {res.json()['token']}"}
    return out


def start_mlflow(workdir: Path, port: int) -> subprocess.Popen:
    """A real ``mlflow server`` on ``port`` over the store in ``workdir`` (reused on restart)."""
    return start_mlflow_server(workdir, port=port).proc


def wait_until(predicate, timeout: float = 60.0, step: float = 0.2) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true; fail with a timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        time.sleep(step)


def alias_writes(*logs: str) -> int:
    """How many alias writes reached MLflow, from the server logs."""
    return sum(text.count("mlflow alias set:") for text in logs)
