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
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops._procs import stop_group
from mlops.errors import MlopsError, RegistryError
from mlops.quickstart._sandbox import BIN as BIN  # re-exported: the workspace constants
from mlops.quickstart._sandbox import PIPELINE_DIRS as PIPELINE_DIRS
from mlops.quickstart._sandbox import PIPELINE_FILES as PIPELINE_FILES
from mlops.quickstart._sandbox import (
    QuickstartError,
    RegistryProcess,
    Workspace,
    commit,
    create_token,
    create_workspace,
    start_registry,
)

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
USERS = (("ci-bot", "requester"), ("alice", "approver"), ("bob", "approver"))


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
        stop_group(proc)
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
    with RegistryClient(job.server.url, token=job.tokens["ci-bot"]) as client:
        verified = _wait_verified(client, request_id)  # the server re-derives the evidence
    found = verified.verification or {}
    if found:
        if verified.state != "pending":
            raise RegistryError(
                f"The server did not verify request #{request_id}: it is {verified.state!r} "
                f"({found.get('code')}: {found.get('reason')}).",
                hint=f"Look at `mlops status {request_id}` and the server log.",
            )
        job.console.print(
            f"  server re-derived the evidence ({', '.join(found.get('steps') or ())}): "
            f"{found.get('checked')} values match; request #{request_id} is {verified.state}"
        )
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


def _wait_verified(client: Any, request_id: int, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    promotion = client.get_promotion(request_id)
    while promotion.state == "verifying" and time.monotonic() < deadline:
        time.sleep(0.5)
        promotion = client.get_promotion(request_id)
    return promotion


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
