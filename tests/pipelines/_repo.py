"""Temporary git + DVC repositories: a copy of this project's pipeline files, or a fresh
clone of the whole checkout."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PIPELINE_FILES = ("dvc.yaml", "params.yaml", "promotion-policy.yaml")
PIPELINE_DIRS = ("pipelines", "suites")


@dataclass(frozen=True)
class PipelineRepo:
    """A repo with the pipeline, a local DVC remote and the environment to run it in."""

    root: Path
    remote: Path
    env: dict[str, str] = field(repr=False)

    @property
    def home(self) -> Path:
        """The default MLflow/Bento home of the pipeline: ``.mlops`` in the repo."""
        return self.root / ".mlops"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command in the repo with the pipeline's environment."""
        res = subprocess.run(
            list(args), cwd=self.root, env=self.env, capture_output=True, text=True
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {res.returncode}:\n{res.stdout[-6000:]}\n"
                f"{res.stderr[-6000:]}"
            )
        return res

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``dvc`` from the test environment's virtualenv."""
        return self.run(str(BIN / "dvc"), *args, check=check)

    def git(self, *args: str) -> str:
        return self.run("git", *args).stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


def pipeline_env(**extra: str) -> dict[str, str]:
    """The environment of a pipeline run: the test's venv first on PATH, no stray MLOPS_*.

    The MLflow and Bento stores are left at their defaults (``.mlops/`` in the repo root) on
    purpose: the test proves that stores inside the repository do not disturb DVC.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "BENTOML_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        BENTOML_DO_NOT_TRACK="true",
        GX_ANALYTICS_ENABLED="false",
        DVC_NO_ANALYTICS="1",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        GIT_AUTHOR_NAME="mlops tests",
        GIT_AUTHOR_EMAIL="tests@example.invalid",
        GIT_COMMITTER_NAME="mlops tests",
        GIT_COMMITTER_EMAIL="tests@example.invalid",
        COLUMNS="500",  # the tools' tables never wrap a long temporary path
    )
    # the stages import the library under test (cwd, the repo, stays first for `pipelines`)
    env["PYTHONPATH"] = str(SOURCE)
    # mlflow.set_tracking_uri/set_registry_uri export these to os.environ for subprocesses,
    # so earlier tests in this process would otherwise point the pipeline at their stores.
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    env.update(extra)
    return env


def make_pipeline_repo(base: Path, *, source: Path = SOURCE, **env: str) -> PipelineRepo:
    """Copy the pipeline files of ``source`` into ``base/repo``, init git + DVC, commit."""
    root, remote = base / "repo", base / "dvc-remote"
    root.mkdir(parents=True)
    remote.mkdir()
    for name in PIPELINE_FILES:
        shutil.copy2(source / name, root / name)
    for name in PIPELINE_DIRS:
        shutil.copytree(
            source / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    (root / ".gitignore").write_text(".mlops/\n__pycache__/\n", encoding="utf-8")
    repo = PipelineRepo(root=root, remote=remote, env=pipeline_env(**env))
    repo.git("init", "-q", "-b", "main")
    repo.dvc("init", "-q")
    repo.dvc("config", "core.analytics", "false")
    repo.dvc("remote", "add", "-d", "local", str(remote))
    repo.commit("pipeline")
    return repo


def _git_out(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(SOURCE), *args], capture_output=True, text=True, check=True
    ).stdout


def clone_project(base: Path) -> PipelineRepo:
    """``git clone`` this checkout into ``base/repo``: what the README's "clone, then
    ``dvc repro``" starts from, with no ``dvc init`` and no remote set up (the DVC remote is
    the one ``.dvc/config`` names, ``.mlops/dvc-remote`` in the clone).

    The clone is on the checkout's branch at its HEAD. Work not yet committed in the
    checkout (changed tracked files, new files git does not ignore) goes on top as one more
    commit, so the run tests the code as it is on disk (the checkout's HEAD is then the
    clone's ``HEAD~1``).
    """
    root = base / "repo"
    head = _git_out("rev-parse", "HEAD").strip()
    branch = _git_out("rev-parse", "--abbrev-ref", "HEAD").strip()
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(SOURCE), str(root)], check=True)
    repo = PipelineRepo(
        root=root, remote=root / ".mlops" / "dvc-remote", env=pipeline_env(PYTHONPATH=str(root))
    )
    repo.git("checkout", "-q", "-B", "main" if branch == "HEAD" else branch, head)
    changed = _git_out("diff", "HEAD", "--binary")
    if changed:
        subprocess.run(
            ["git", "-C", str(root), "apply", "--binary", "-"], input=changed, text=True, check=True
        )
    for name in _git_out("ls-files", "--others", "--exclude-standard", "-z").split("\0"):
        if name:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(SOURCE / name, root / name)
    if repo.git("status", "--porcelain"):
        repo.commit("work not yet committed in the checkout under test")
    return repo


# --- running the pipeline ---------------------------------------------------------------
STAGES = ["prepare", "validate", "train", "evaluate", "package", "request"]
MODEL = "iris-classifier"


@dataclass(frozen=True)
class Repro:
    returncode: int
    output: str
    seconds: dict[str, float]


def repro(repo: PipelineRepo, *args: str) -> Repro:
    """Run ``dvc <args>`` streaming its output; wall time per stage from its progress lines."""
    proc = subprocess.Popen(
        [str(BIN / "dvc"), *args],
        cwd=repo.root,
        env=repo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines, seconds, current, started = [], {}, None, time.monotonic()
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        found = re.match(r"Running stage '([\w-]+)'", line)
        if found:
            now = time.monotonic()
            if current:
                seconds[current] = round(now - started, 1)
            current, started = found.group(1), now
    proc.wait()
    if current:
        seconds[current] = round(time.monotonic() - started, 1)
    return Repro(proc.returncode, "".join(lines), seconds)


def read(repo: PipelineRepo, path: str) -> dict:
    return json.loads((repo.root / path).read_text())
