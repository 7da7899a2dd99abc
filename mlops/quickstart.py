"""``mlops quickstart``: the whole gated flow, end to end, in a throwaway workspace.

The workspace holds a git + DVC project (``project/``) with a copy of this repository's
pipeline (``dvc.yaml``, ``params.yaml``, ``pipelines/``, ``suites/``,
``promotion-policy.yaml``), its local DVC remote (``dvc-remote/``) and, under
``project/.mlops/``, the MLflow SQLite store, the Bento store and the registry server's
database. The job then:

1. creates that workspace;
2. starts the registry server and issues tokens (``ci-bot`` requester, ``alice`` and
   ``bob`` approvers) through the CLI's bootstrap path;
3. runs the pipeline (``dvc repro``: prepare, validate, train, evaluate, package,
   request) and pushes the data (``dvc push``);
4. approves the request as two reviewers and reads the moved ``production`` alias back;
5. serves the approved Bento and asks it for one prediction;
6. stops everything it started, also when a step failed.

The helpers :func:`create_workspace`, :func:`start_registry` and :func:`create_token`
are what the notebooks use to get the same sandbox.

Example:
    >>> from mlops.quickstart import run_quickstart
    >>> run_quickstart(workdir="/tmp/mlops-demo")                      # doctest: +SKIP
    0
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.errors import ConfigError, MlopsError, RegistryError

__all__ = [
    "MODEL_NAME",
    "USERS",
    "QuickstartError",
    "RegistryProcess",
    "Workspace",
    "commit",
    "create_token",
    "create_workspace",
    "run_quickstart",
    "start_registry",
]

MODEL_NAME = "iris-classifier"  # params.yaml train.name
TARGET = "production"
SUMMARY_FILE = "quickstart.json"
PIPELINE_FILES = ("dvc.yaml", "params.yaml", "promotion-policy.yaml")
PIPELINE_DIRS = ("pipelines", "suites")
USERS = (("ci-bot", "requester"), ("alice", "approver"), ("bob", "approver"))
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
        """A subprocess environment: this interpreter's bin first on PATH, no stray MLOPS_*."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "BENTOML_"))}
        env.pop("PYTHONPATH", None)
        env.update(self.env(), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra)
        return env


def _source_root() -> Path:
    """The checkout this package runs from: the parent of the ``mlops`` package."""
    root = Path(__file__).resolve().parent.parent
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
        _stop(self.proc)


def _stop(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    import signal

    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    port = port or _free_port()
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


# --- the main job -------------------------------------------------------------------------
@dataclass
class _Job:
    ws: Workspace | None = None
    console: Any = None
    workdir: Path | None = None
    server: RegistryProcess | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def run_quickstart(workdir: str | os.PathLike[str] | None = None) -> int:
    """Run the main job end to end on embedded defaults; return the exit code.

    Prints a line per step, a table of each step's wall time, and writes the summary to
    ``<workspace>/quickstart.json``. A failing step is named with what to do (exit 1);
    the registry server and the served Bento are stopped in every case.

    Example:
        >>> raise SystemExit(run_quickstart())                           # doctest: +SKIP
    """
    from rich.console import Console

    job = _Job(
        console=Console(highlight=False, soft_wrap=True), workdir=Path(workdir) if workdir else None
    )
    steps: list[tuple[str, Callable[[_Job], None], str]] = [
        ("create the workspace (git + DVC + pipeline)", _step_workspace, _HINT_WORKSPACE),
        ("start the registry server, issue tokens", _step_server, _HINT_SERVER),
        ("run the pipeline (dvc repro, dvc push)", _step_pipeline, _HINT_PIPELINE),
        ("approve as two reviewers, read the alias", _step_approve, _HINT_APPROVE),
        ("serve the approved Bento, predict", _step_serve, _HINT_SERVE),
    ]
    ok = False  # stays False on a failed step and on an interrupt (Ctrl-C, SIGTERM)
    try:
        with _isolated(job), _terminate_as_exit():
            ok = all(
                _run_step(job, i, len(steps), title, step, hint)
                for i, (title, step, hint) in enumerate(steps, 1)
            )
    finally:
        started = time.monotonic()
        if job.server is not None:
            job.server.stop()
        job.seconds["stop the registry server"] = round(time.monotonic() - started, 2)
        _finish(job, ok=ok)
    return 0 if ok else 1


def _run_step(
    job: _Job, i: int, n: int, title: str, step: Callable[[_Job], None], hint: str
) -> bool:
    console = job.console
    started = time.monotonic()
    try:
        with console.status(f"[{i}/{n}] {title} ..."):
            step(job)
    except Exception as exc:  # name the step and what to do; the CLI exits nonzero
        from rich.markup import escape

        job.seconds[title] = round(time.monotonic() - started, 2)
        if isinstance(exc, MlopsError):
            error, todo = f"{exc.code}: {exc.message}", exc.hint or hint
        else:
            error, todo = f"{type(exc).__name__}: {exc}", hint
        console.print(f"[red]✗[/red] \\[{i}/{n}] {escape(title)} failed: {escape(error)}")
        console.print(f"[yellow]What to do:[/yellow] {escape(todo)}")
        job.state.update(failed_step=title, error=error)
        return False
    job.seconds[title] = round(time.monotonic() - started, 2)
    console.print(f"[green]✓[/green] [{i}/{n}] {title} [dim]({job.seconds[title]:.1f}s)[/dim]")
    return True


_HINT_WORKSPACE = "Check that git and dvc run here and that --workdir is empty and writable."
_HINT_SERVER = "Read .mlops/registry-server.log in the workspace; check the port is free."
_HINT_PIPELINE = "Read the stage output above; rerun with --workdir and `dvc repro` there."
_HINT_APPROVE = "Check the request with `mlops status ID` against the server's URL."
_HINT_SERVE = "Run `bentoml serve TAG` with BENTOML_HOME=<workspace>/.mlops/bentoml to see why."


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` so the ``finally`` blocks stop what we started."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _isolated(job: _Job) -> Iterator[None]:
    """Restore the environment and the cwd the in-process steps change (Bento home)."""
    saved_env = dict(os.environ)
    saved_cwd = Path.cwd()
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def _step_workspace(job: _Job) -> None:
    job.ws = create_workspace(job.workdir)
    job.console.print(f"  workspace {job.ws.root}")


def _step_server(job: _Job) -> None:
    assert job.ws is not None
    job.server = start_registry(job.ws)
    for user, role in USERS:
        job.tokens[user] = create_token(job.ws, user, role)
    job.console.print(f"  registry server {job.server.url}, tokens for " + ", ".join(job.tokens))


def _step_pipeline(job: _Job) -> None:
    assert job.ws is not None and job.server is not None
    env = job.ws.process_env(MLOPS_REGISTRY_URL=job.server.url, MLOPS_TOKEN=job.tokens["ci-bot"])
    job.state["stage_seconds"] = _stream(job, [sys.executable, "-m", "dvc", "repro"], env=env)
    _stream(job, [sys.executable, "-m", "dvc", "push"], env=env)
    commit(job.ws, "Pipeline run: data, metrics and reports")
    reports = job.ws.project / "reports"
    job.state["model"] = json.loads((reports / "model.json").read_text())
    job.state["package"] = json.loads((reports / "package.json").read_text())
    job.state["request"] = json.loads((reports / "promotion.json").read_text())
    request = job.state["request"]
    if request.get("id") is None:
        raise QuickstartError(
            f"The pipeline did not submit a promotion request (state {request['state']!r}): "
            + "; ".join(request.get("blocked_by") or ["no reason recorded"]),
            hint="Read reports/promotion.json in the workspace project.",
        )


def _stream(job: _Job, cmd: list[str], *, env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd`` in the project, echoing its output; wall time per ``Running stage``."""
    assert job.ws is not None
    import re

    from rich.markup import escape

    tail: list[str] = []
    seconds: dict[str, float] = {}
    current, started = None, time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=job.ws.project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            tail = [*tail[-40:], line.rstrip()]
            found = re.match(r"Running stage '([\w-]+)'", line)
            if found:
                if current:
                    seconds[current] = round(time.monotonic() - started, 2)
                current, started = found.group(1), time.monotonic()
            if line.strip():
                job.console.print(f"  [dim]│[/dim] {escape(line.rstrip())}")
        proc.wait()
    except BaseException:  # interrupted: end the command and the stages it runs (its group)
        _stop(proc)
        raise
    if proc.returncode != 0:
        shown = " ".join(cmd[2:]) if cmd[0] == sys.executable else " ".join(cmd)
        raise QuickstartError(
            f"`{shown}` exited {proc.returncode}; last lines: " + " / ".join(tail[-5:]),
            hint="Read the stage output above; fix the stage, then rerun the quickstart.",
        )
    if current:
        seconds[current] = round(time.monotonic() - started, 2)
    return seconds


def _step_approve(job: _Job) -> None:
    from mlflow.tracking import MlflowClient

    from mlops.client import RegistryClient

    assert job.ws is not None and job.server is not None
    request_id, model = job.state["request"]["id"], job.state["model"]
    for user in ("alice", "bob"):
        with RegistryClient(job.server.url, token=job.tokens[user]) as client:
            promotion = client.approve(request_id, comment=f"{user}: evidence reviewed")
        job.console.print(f"  {user} approved: request #{request_id} is {promotion.state}")
    with RegistryClient(job.server.url, token=job.tokens["ci-bot"]) as client:
        promotion = _wait_final(client, request_id)
        holder = client.alias(model["name"], TARGET)
    mlflow_mv = MlflowClient(
        tracking_uri=job.ws.tracking_uri, registry_uri=job.ws.tracking_uri
    ).get_model_version_by_alias(model["name"], TARGET)
    if promotion.state != "promoted" or int(mlflow_mv.version) != model["version"]:
        raise RegistryError(
            f"Request #{request_id} is {promotion.state!r} and MLflow's {TARGET!r} alias "
            f"names version {mlflow_mv.version}, not {model['version']}.",
            hint=f"Look at `mlops status {request_id}` and the server log.",
        )
    job.state.update(
        promotion=promotion.to_dict(),
        alias_holder=holder.to_dict(),
        mlflow_alias=int(mlflow_mv.version),
    )
    job.console.print(f"  request #{request_id}: {promotion.state}; server: {holder}")
    job.console.print(f"  MLflow: {model['name']}@{TARGET} -> version {mlflow_mv.version}")


def _wait_final(client: Any, request_id: int, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    promotion = client.get_promotion(request_id)
    while promotion.state == "approved" and time.monotonic() < deadline:
        time.sleep(0.5)
        promotion = client.get_promotion(request_id)
    return promotion


def _step_serve(job: _Job) -> None:
    import httpx
    import pandas as pd

    assert job.ws is not None
    os.environ.update(job.ws.env())  # the Bento store of the workspace (restored afterwards)
    from mlops.packaging import serve

    bento_tag = job.state["package"]["bento_tag"]
    row = pd.read_csv(job.ws.project / "data" / "eval.csv").drop(columns=["target"]).head(1)
    record = row.to_dict(orient="records")
    with serve(bento_tag) as url:
        job.state["bento_url"] = url
        response = httpx.post(f"{url}/predict", json={"data": record}, timeout=60.0)
    if not response.is_success:
        raise QuickstartError(
            f"POST {url}/predict answered {response.status_code}: {response.text[:500]}"
        )
    job.state.update(bento_tag=bento_tag, input=record[0], prediction=response.json())
    job.console.print(f"  {bento_tag} at {url}: {record[0]} -> {response.json()}")


def _finish(job: _Job, *, ok: bool) -> None:
    from rich.table import Table

    table = Table(title="quickstart wall time per step", title_justify="left")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for step, seconds in job.seconds.items():
        table.add_row(step, f"{seconds:.1f}")
        if step.startswith("run the pipeline"):
            for stage, took in job.state.get("stage_seconds", {}).items():
                table.add_row(f"[dim]  dvc stage {stage}[/dim]", f"[dim]{took:.1f}[/dim]")
    table.add_row("[bold]total[/bold]", f"[bold]{sum(job.seconds.values()):.1f}[/bold]")
    job.console.print(table)
    summary = _summary(job, ok=ok)
    if job.ws is not None:
        (job.ws.root / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        job.console.print(f"Summary written to {job.ws.root / SUMMARY_FILE}.")
    if ok:
        job.console.print(
            f"[green]Done.[/green] {MODEL_NAME} v{job.state['model']['version']} is "
            f"{TARGET}; browse it with `mlflow ui --backend-store-uri {job.ws.tracking_uri}`."  # type: ignore[union-attr]
        )


def _summary(job: _Job, *, ok: bool) -> dict[str, Any]:
    ws, server = job.ws, job.server
    return {
        "ok": ok,
        "workspace": str(ws.root) if ws else None,
        "tracking_uri": ws.tracking_uri if ws else None,
        "registry_url": server.url if server else None,
        "registry_pid": server.proc.pid if server else None,
        "seconds": job.seconds,
        **{k: v for k, v in job.state.items() if k not in ("package",)},
        "package": job.state.get("package"),
    }
