"""The quickstart sandbox: a throwaway git + DVC workspace and a registry server in it.

The private half of :mod:`mlops.quickstart`, which re-exports the public names
(:class:`Workspace`, :func:`create_workspace`, :func:`commit`, :func:`start_registry`,
:class:`RegistryProcess`, :func:`create_token`, :class:`QuickstartError`): the notebooks
import them from there to get the same sandbox as ``mlops quickstart``.

Example:
    >>> from mlops.quickstart import create_workspace, start_registry   # doctest: +SKIP
    >>> ws = create_workspace()                                         # doctest: +SKIP
    >>> server = start_registry(ws)                                     # doctest: +SKIP
    >>> server.stop()                                                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlops._procs import free_port, stop_group
from mlops.errors import ConfigError, MlopsError

PIPELINE_FILES = ("dvc.yaml", "params.yaml", "promotion-policy.yaml")
PIPELINE_DIRS = ("pipelines", "suites")
BIN = Path(sys.executable).parent


class QuickstartError(MlopsError, RuntimeError):
    """A step of the quickstart (a command it runs, a service it starts) failed."""

    code = "quickstart_failed"
    default_hint = "Read the output above; rerun with --workdir to keep the workspace."


# --- the sandbox --------------------------------------------------------------------------
@dataclass
class Workspace:
    """A throwaway git + DVC project with its stores under ``project/.mlops``.

    Example:
        >>> ws = Workspace(Path("/tmp/qs"))
        >>> ws.env()["MLOPS_TRACKING_URI"]
        'sqlite:////tmp/qs/project/.mlops/mlflow.db'
    """

    root: Path
    project: Path = field(init=False)
    remote: Path = field(init=False)
    home: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.project = self.root / "project"
        self.remote = self.root / "dvc-remote"
        self.home = self.project / ".mlops"

    @property
    def tracking_uri(self) -> str:
        """The MLflow store of the workspace (a SQLite file)."""
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def database_url(self) -> str:
        """The registry server's own database (a SQLite file)."""
        return f"sqlite:///{self.home / 'registry.db'}"

    def env(self) -> dict[str, str]:
        """The variables that point the library, the tools and the server at the workspace."""
        return {
            "MLOPS_HOME": str(self.home),
            "MLOPS_TRACKING_URI": self.tracking_uri,
            "MLOPS_REGISTRY_URI": self.tracking_uri,
            "MLOPS_ARTIFACT_ROOT": str(self.home / "artifacts"),
            "MLOPS_DVC_ROOT": str(self.project),
            "MLOPS_POLICY_PATH": str(self.project / "promotion-policy.yaml"),
            "MLOPS_EXPERIMENT": "quickstart",
            "MLOPS_REGISTRY_DATABASE_URL": self.database_url,
            "MLOPS_REGISTRY_TRACKING_URI": self.tracking_uri,
            "MLOPS_REGISTRY_POLICY_PATH": str(self.project / "promotion-policy.yaml"),
            "BENTOML_HOME": str(self.home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "GX_ANALYTICS_ENABLED": "false",
            "DVC_NO_ANALYTICS": "1",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }

    def process_env(self, **extra: str) -> dict[str, str]:
        """A subprocess environment: this interpreter's bin first on PATH, no stray MLOPS_*.

        The stages import the same library as this process (the checkout the pipeline was
        copied from), whatever else is installed.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "BENTOML_"))}
        env["PYTHONPATH"] = str(_source_root())
        env.update(self.env(), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra)
        return env


def _source_root() -> Path:
    """The checkout this package runs from: the parent of the ``mlops`` package."""
    root = Path(__file__).resolve().parents[2]
    missing = [n for n in (*PIPELINE_FILES, *PIPELINE_DIRS) if not (root / n).exists()]
    if missing:
        raise ConfigError(
            f"The pipeline files {missing} are missing next to the mlops package in {root}.",
            hint="Run the quickstart from a checkout of the repository "
            "(`pip install -e .` there), which ships dvc.yaml, pipelines/ and suites/.",
        )
    return root


def _run(cmd: list[str], *, ws: Workspace, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(
        cmd, cwd=ws.project, env=env or ws.process_env(), capture_output=True, text=True
    )
    if res.returncode != 0:
        raise QuickstartError(
            f"`{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}` exited "
            f"{res.returncode}: {(res.stderr or res.stdout).strip()[-2000:]}",
        )
    return res.stdout


def _git(ws: Workspace, *args: str) -> str:
    return _run(["git", *args], ws=ws)


def _dvc(ws: Workspace, *args: str) -> str:
    return _run([sys.executable, "-m", "dvc", *args], ws=ws)


def commit(ws: Workspace, message: str) -> None:
    """Commit everything in the project (nothing to commit is fine).

    Example:
        >>> commit(ws, "pipeline run")                                 # doctest: +SKIP
    """
    _git(ws, "add", "-A")
    if _git(ws, "status", "--porcelain").strip():
        _git(ws, "commit", "-q", "-m", message)


def create_workspace(
    root: str | os.PathLike[str] | None = None, *, source: Path | None = None
) -> Workspace:
    """Copy the pipeline into ``root/project``, ``git init``, ``dvc init``, add a local remote.

    ``root`` defaults to a new temporary folder; an existing non-empty project is refused.

    Example:
        >>> ws = create_workspace()                                     # doctest: +SKIP
        >>> sorted(p.name for p in ws.project.iterdir())[:3]            # doctest: +SKIP
        ['.dvc', '.dvcignore', '.git']
    """
    src = source or _source_root()
    base = Path(root) if root else Path(tempfile.mkdtemp(prefix="mlops-quickstart-"))
    ws = Workspace(base.resolve())
    if ws.project.exists() and any(ws.project.iterdir()):
        raise ConfigError(
            f"The quickstart project folder {str(ws.project)!r} already exists and is not empty.",
            hint="Pass an empty --workdir, or omit it to use a fresh temporary folder.",
        )
    ws.project.mkdir(parents=True, exist_ok=True)
    ws.remote.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        shutil.copy2(src / name, ws.project / name)
    for name in PIPELINE_DIRS:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(src / name, ws.project / name, ignore=ignore)
    (ws.project / ".gitignore").write_text(".mlops/\n__pycache__/\n", encoding="utf-8")
    _git(ws, "init", "-q", "-b", "main")
    _git(ws, "config", "user.name", "mlops quickstart")
    _git(ws, "config", "user.email", "quickstart@example.invalid")
    _dvc(ws, "init", "-q")
    _dvc(ws, "config", "core.analytics", "false")
    _dvc(ws, "remote", "add", "-d", "local", str(ws.remote))
    commit(ws, "Start a DVC project with the mlops pipeline")
    return ws


# --- the registry server ------------------------------------------------------------------
@dataclass
class RegistryProcess:
    """A ``mlops server`` subprocess; :meth:`stop` ends its whole process group.

    Example:
        >>> server = start_registry(ws)                                 # doctest: +SKIP
        >>> server.url                                                  # doctest: +SKIP
        'http://127.0.0.1:40123'
        >>> server.stop()                                               # doctest: +SKIP
    """

    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 15 s); idempotent."""
        stop_group(self.proc)


def _mlops_cli() -> list[str]:
    script = BIN / "mlops"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from mlops.cli import app; sys.exit(app())"]


def start_registry(
    ws: Workspace, *, port: int | None = None, timeout: float = 60.0
) -> RegistryProcess:
    """Start ``mlops server`` on a free loopback port with the workspace's DB and policy.

    Waits for ``/readyz``; a server that exits or stays unready raises
    :class:`QuickstartError` with the tail of its log.

    Example:
        >>> server = start_registry(ws)                                 # doctest: +SKIP
    """
    import httpx

    port = port or free_port()
    ws.home.mkdir(parents=True, exist_ok=True)
    log = ws.home / "registry-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_mlops_cli(), "server", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ws.project, env=ws.process_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    (ws.home / "registry-server.pid").write_text(f"{proc.pid}\n")  # for a caller's cleanup
    server = RegistryProcess(url=f"http://127.0.0.1:{port}", port=port, proc=proc, log=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/readyz", timeout=2.0).is_success:
                return server
        time.sleep(0.3)
    server.stop()
    raise QuickstartError(
        f"The registry server on port {port} did not become ready within {timeout:g}s "
        f"(exit code {proc.returncode}): {log.read_text(errors='replace')[-2000:]}",
        hint=f"Read {log}; check that the port is free and the database writable.",
    )


def create_token(ws: Workspace, user: str, role: str) -> str:
    """Issue a token through the CLI's bootstrap path (``mlops token create``); return it.

    Example:
        >>> create_token(ws, "alice", "approver")[:4]                   # doctest: +SKIP
        'mlo_'
    """
    out = _run(
        [*_mlops_cli(), "token", "create", user, "--role", role, "--json",
         "--database-url", ws.database_url],
        ws=ws,
    )  # fmt: skip
    return str(json.loads(out)["token"])
