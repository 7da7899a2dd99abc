"""Real processes for the multi-process tests: the registry server (``registry_server.run``,
started by :mod:`tests._registry`) and an ``mlflow server`` that can be stopped and started
again on the same port and store."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tests import _registry
from tests._registry import ADMIN, RegistryProcess
from tests.conftest import start_mlflow_server

# How the server tests run it: no pages, INFO logs (tests count "mlflow alias set:" lines),
# no webhook worker, and an unreachable MLflow failing fast, not after minutes of retries.
SERVER_TEST_SETTINGS = {"ui": "false", "log_level": "info", "webhook_interval": "0"}
FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def start_registry(
    workdir: Path,
    *,
    database_url: str,
    tracking_uri: str,
    policy_file: Path,
    env: Mapping[str, str] | None = None,
    **settings: Any,
) -> RegistryProcess:
    """:func:`tests._registry.start_registry` with the server tests' settings (``env``, if
    given, replaces ``os.environ`` as the base environment)."""
    return _registry.start_registry(
        workdir,
        database_url=database_url,
        tracking_uri=tracking_uri,
        policy_file=policy_file,
        env={**(os.environ if env is None else env), **FAIL_FAST},
        **{**SERVER_TEST_SETTINGS, **settings},
    )


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
