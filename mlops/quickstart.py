"""``mlops quickstart``: versioned data to a registered model, in a throwaway workspace.

The workspace holds a git + DVC project (``project/``), its local DVC remote
(``dvc-remote/``) and, under ``project/.mlops/``, a SQLite MLflow store. Nothing outside
it is touched: the environment and the working directory are restored afterwards.

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
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.errors import ConfigError, RegistryError

__all__ = ["MODEL_NAME", "run_quickstart"]

MODEL_NAME = "iris-quickstart"
SUMMARY_FILE = "quickstart.json"


@dataclass
class _Workspace:
    root: Path
    project: Path = field(init=False)
    remote: Path = field(init=False)
    home: Path = field(init=False)
    state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.project = self.root / "project"
        self.remote = self.root / "dvc-remote"
        self.home = self.project / ".mlops"

    def env(self) -> dict[str, str]:
        return {
            "MLOPS_HOME": str(self.home),
            "MLOPS_TRACKING_URI": f"sqlite:///{self.home / 'mlflow.db'}",
            "MLOPS_REGISTRY_URI": f"sqlite:///{self.home / 'mlflow.db'}",
            "MLOPS_ARTIFACT_ROOT": str(self.home / "artifacts"),
            "MLOPS_DVC_ROOT": str(self.project),
            "MLOPS_EXPERIMENT": "quickstart",
            "DVC_NO_ANALYTICS": "1",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }


def run_quickstart(workdir: str | os.PathLike[str] | None = None) -> int:
    """Run the main job end to end on embedded defaults; return the exit code.

    Steps: create a git + DVC project with a local remote, version the iris data set with
    DVC, train a scikit-learn model in an MLflow run that records the data version,
    register it, and print its lineage. A failing step is named with what to do.

    Example:
        >>> raise SystemExit(run_quickstart())                           # doctest: +SKIP
    """
    from rich.console import Console

    console = Console(highlight=False)
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mlops-quickstart-"))
    ws = _Workspace(root=root.resolve())
    console.print(f"[bold]mlops quickstart[/bold] in {ws.root}")
    steps: list[tuple[str, Callable[[_Workspace], None], str]] = [
        ("create a git + DVC project", _create_project, _HINT_PROJECT),
        ("version the iris data set with DVC", _version_data, _HINT_DVC),
        ("train a model in an MLflow run", _train, _HINT_MLFLOW),
        ("register the model", _register, _HINT_MLFLOW),
        ("read the lineage back", _lineage, _HINT_MLFLOW),
    ]
    with _isolated(ws):
        for i, (title, step, hint) in enumerate(steps, 1):
            started = time.monotonic()
            with console.status(f"[{i}/{len(steps)}] {title} ..."):
                try:
                    step(ws)
                except Exception as exc:  # report the step and stop; the CLI exits nonzero
                    _report_failure(console, i, len(steps), title, exc, hint)
                    return 1
            console.print(
                f"[green]✓[/green] [{i}/{len(steps)}] {title} "
                f"[dim]({time.monotonic() - started:.1f}s)[/dim]"
            )
    _print_lineage(console, ws)
    return 0


_HINT_PROJECT = "Check that git is installed and that the workdir is writable and empty."
_HINT_DVC = "Check that `dvc` runs in this environment (`python -m dvc version`)."
_HINT_MLFLOW = "Check that mlflow and scikit-learn are installed (`pip install -e .`)."


def _report_failure(console: Any, i: int, n: int, title: str, exc: Exception, hint: str) -> None:
    console.print(f"[red]✗[/red] [{i}/{n}] {title} failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, subprocess.CalledProcessError):
        output = (exc.stderr or exc.stdout or "").strip()
        if output:
            console.print(output[-2000:], markup=False)
    console.print(f"[yellow]What to do:[/yellow] {getattr(exc, 'hint', '') or hint}")


@contextlib.contextmanager
def _isolated(ws: _Workspace) -> Iterator[None]:
    """Point MLOPS_* and the cwd at the workspace; restore everything afterwards."""
    from mlops import tracking

    saved_env = {k: os.environ.get(k) for k in ws.env()}
    saved_cwd = Path.cwd()
    saved_uris = tracking._EXPLICIT["uris"]
    mlflow = sys.modules.get("mlflow")
    saved_mlflow = (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) if mlflow else None
    ws.root.mkdir(parents=True, exist_ok=True)
    os.environ.update(ws.env())
    tracking._EXPLICIT["uris"] = None
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        tracking._EXPLICIT["uris"] = saved_uris
        mlflow = sys.modules.get("mlflow")
        if mlflow is not None and saved_mlflow is not None:
            mlflow.set_tracking_uri(saved_mlflow[0])
            mlflow.set_registry_uri(saved_mlflow[1])


def _cmd(ws: _Workspace, *args: str) -> str:
    res = subprocess.run(args, cwd=ws.project, capture_output=True, text=True, check=True)
    return res.stdout


def _dvc(ws: _Workspace, *args: str) -> str:
    return _cmd(ws, sys.executable, "-m", "dvc", *args)


# --- steps ------------------------------------------------------------------------------
def _create_project(ws: _Workspace) -> None:
    if ws.project.exists() and any(ws.project.iterdir()):
        raise ConfigError(
            f"The quickstart project folder {str(ws.project)!r} already exists and is not empty.",
            hint="Pass an empty --workdir, or omit it to use a fresh temporary folder.",
        )
    ws.project.mkdir(parents=True, exist_ok=True)
    ws.remote.mkdir(parents=True, exist_ok=True)
    os.chdir(ws.project)
    _cmd(ws, "git", "init", "-q")
    _cmd(ws, "git", "config", "user.name", "mlops quickstart")
    _cmd(ws, "git", "config", "user.email", "quickstart@example.invalid")
    _dvc(ws, "init", "-q")
    _dvc(ws, "config", "core.analytics", "false")
    _dvc(ws, "remote", "add", "-d", "local", str(ws.remote))
    (ws.project / ".gitignore").write_text(".mlops/\n")
    _cmd(ws, "git", "add", "-A")
    _cmd(ws, "git", "commit", "-q", "-m", "Start a DVC project")


def _version_data(ws: _Workspace) -> None:
    from sklearn.datasets import load_iris

    import mlops

    data = ws.project / "data" / "iris.csv"
    data.parent.mkdir(parents=True, exist_ok=True)
    load_iris(as_frame=True).frame.to_csv(data, index=False)
    _dvc(ws, "add", "-q", "data/iris.csv")
    _cmd(ws, "git", "add", "data/iris.csv.dvc", "data/.gitignore")
    _cmd(ws, "git", "commit", "-q", "-m", "Track the iris data set with DVC")
    _dvc(ws, "push", "-q")
    ws.state["dataset"] = mlops.data.version("data/iris.csv")


def _train(ws: _Workspace) -> None:
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    import mlops

    ds = ws.state["dataset"]
    params = {"C": 1.0, "max_iter": 500, "test_size": 0.25, "random_state": 0}
    with mlops.start_run("quickstart", datasets=[ds], params=params) as run:
        df = mlops.data.read_dataframe(ds)
        x, y = df.drop(columns=["target"]), df["target"]
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=params["test_size"], random_state=params["random_state"], stratify=y
        )
        clf = LogisticRegression(C=params["C"], max_iter=params["max_iter"])
        clf.fit(x_train, y_train)
        accuracy = float(clf.score(x_test, y_test))
        mlflow.log_metric("accuracy", accuracy)
        signature = infer_signature(x_train, clf.predict(x_train))
        mlflow.sklearn.log_model(
            clf, name="model", signature=signature, input_example=x_train.head(3)
        )
    ws.state.update(run=run, accuracy=accuracy)


def _register(ws: _Workspace) -> None:
    import mlops

    ws.state["model_version"] = mlops.register(ws.state["run"], MODEL_NAME)


def _lineage(ws: _Workspace) -> None:
    from mlops import registry

    mv = ws.state["model_version"]
    lineage = registry.lineage(mv.name, mv.version)
    if lineage.datasets != (ws.state["dataset"],):
        raise RegistryError(
            f"The lineage of {mv.name} v{mv.version} names {lineage.datasets!r}, "
            f"not the dataset it was trained on ({ws.state['dataset']}).",
            hint="Report this: the run's mlops.dataset.* tags were not recorded.",
        )
    ws.state["lineage"] = lineage
    summary = {
        "workspace": str(ws.root),
        "tracking_uri": ws.env()["MLOPS_TRACKING_URI"],
        "accuracy": ws.state["accuracy"],
        "lineage": lineage.to_dict(),
    }
    (ws.root / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def _print_lineage(console: Any, ws: _Workspace) -> None:
    from rich.table import Table

    lineage = ws.state["lineage"]
    mv = lineage.model_version
    (ds,) = lineage.datasets
    table = Table(title=f"{mv.name} version {mv.version}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for what, value in (
        ("dataset", ds.path),
        ("md5", ds.md5),
        ("rev", ds.rev),
        ("remote", ds.remote or "-"),
        ("run id", lineage.run_id or "-"),
        ("git commit", lineage.git_commit or "-"),
        ("accuracy", f"{ws.state['accuracy']:.3f}"),
        ("model files", mv.download_uri),
        ("tracking store", ws.env()["MLOPS_TRACKING_URI"]),
    ):
        table.add_row(what, value)
    console.print(table)
    console.print(
        f"Lineage saved to {ws.root / SUMMARY_FILE}. Browse the runs with "
        f"`mlflow ui --backend-store-uri {ws.env()['MLOPS_TRACKING_URI']}`."
    )
