"""The registry server as a real process next to a pipeline repository."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import BIN, free_port, stop_process, wait_for_http


@dataclass(frozen=True)
class RegistryServer:
    url: str
    admin_token: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        stop_process(self.proc)


def start_registry_server(
    workdir: Path, *, tracking_uri: str, policy_path: Path, env: dict[str, str]
) -> RegistryServer:
    """``mlops server`` on a free port (SQLite DB in ``workdir``), with an admin token."""
    port, token = free_port(), secrets.token_urlsafe(16)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "registry-server.log"
    server_env = {
        **env,
        "MLOPS_REGISTRY_DATABASE_URL": f"sqlite:///{workdir / 'registry.db'}",
        "MLOPS_REGISTRY_TRACKING_URI": tracking_uri,
        "MLOPS_REGISTRY_POLICY_PATH": str(policy_path),
        "MLOPS_REGISTRY_ADMIN_TOKEN": token,
        "MLOPS_REGISTRY_RECONCILE_INTERVAL": "0",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "mlops"), "server", "--port", str(port)],
            cwd=workdir,
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/readyz", timeout=60, proc=proc)
    except (RuntimeError, TimeoutError) as exc:
        stop_process(proc)
        tail = log.read_text()[-4000:]
        raise RuntimeError(f"registry server did not start: {exc}\n{tail}") from exc
    return RegistryServer(url=url, admin_token=token, proc=proc, log=log)
