"""The registry server as a real process: the one way the tests start it.

Either as production runs it, ``registry_server.run()`` configured by ``MLOPS_REGISTRY_*``
(the default), or through the command line a user types, ``mlops server --port ...``
(``cli=True``). The server listens on a free loopback port and is ready (``/readyz``) when
:func:`start_registry` returns; ``stop()`` ends its whole process group.

Example:
    server = start_registry(tmp_path, tracking_uri=uri, policy_file=policy)
    try:
        with server.api() as api:
            api.post("/v1/tokens", json=..., headers=server.admin)
    finally:
        server.stop()
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import BIN, free_port, stop_process, wait_for_http

ADMIN = "proc-admin-token"


@dataclass(frozen=True)
class RegistryProcess:
    """A running registry server: its process, address, log file and admin token."""

    proc: subprocess.Popen
    url: str
    log: Path
    port: int
    admin_token: str = ADMIN
    database_url: str = ""

    @property
    def admin(self) -> dict[str, str]:
        """The admin's bearer header."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def stop(self) -> None:
        stop_process(self.proc)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_registry(
    workdir: Path,
    *,
    policy_file: Path,
    tracking_uri: str | None = None,
    database_url: str | None = None,
    port: int | None = None,
    log_name: str = "registry.log",
    cli: bool = False,
    env: Mapping[str, str] | None = None,
    admin_token: str = ADMIN,
    timeout: float = 120,
    **settings: Any,
) -> RegistryProcess:
    """Start the registry server in ``workdir`` (its cwd and log folder) and wait until ready.

    ``database_url`` defaults to a SQLite file in ``workdir``; ``tracking_uri`` unset leaves
    the server to its settings' default (``MLOPS_TRACKING_URI``). ``env`` replaces
    ``os.environ`` as the base environment; ``settings`` become ``MLOPS_REGISTRY_<NAME>``.
    """
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite:///{workdir / 'registry.db'}"
    server_env = {**(os.environ if env is None else env)}
    server_env.pop("MLOPS_REGISTRY_FAULT_POINT", None)  # only where a test asks for one
    server_env.update(
        MLOPS_REGISTRY_POLICY_PATH=str(policy_file), MLOPS_REGISTRY_ADMIN_TOKEN=admin_token
    )
    if tracking_uri is not None:
        server_env["MLOPS_REGISTRY_TRACKING_URI"] = tracking_uri
    server_env.update({f"MLOPS_REGISTRY_{k.upper()}": str(v) for k, v in settings.items()})
    if cli:  # the options a user passes on the command line
        cmd = [str(BIN / "mlops"), "server", "--port", str(port), "--database-url", database_url]
    else:
        server_env.update(MLOPS_REGISTRY_PORT=str(port), MLOPS_REGISTRY_DATABASE_URL=database_url)
        cmd = [sys.executable, "-c", "import registry_server; registry_server.run()"]
    log = workdir / log_name
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RegistryProcess(proc, f"http://127.0.0.1:{port}", log, port, admin_token, database_url)
    try:
        wait_for_http(f"{server.url}/readyz", timeout=timeout, proc=proc)
    except (RuntimeError, TimeoutError) as exc:
        stop_process(proc)
        raise RuntimeError(f"registry server did not start: {exc}\n{log_text(log)}") from None
    return server


def log_text(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]
