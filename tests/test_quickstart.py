"""`make quickstart` end to end: the real CLI in a throwaway workspace, on real tools.

One run of ``mlops quickstart --workdir`` (a subprocess, as `make quickstart` runs it) is
shared by the assertions; the failure paths run in-process and stop early.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mlops.quickstart import MODEL_NAME, SUMMARY_FILE, run_quickstart
from mlops.quickstart import _run as quickstart_run
from tests.conftest import BIN

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Done:
    workdir: Path
    returncode: int
    output: str
    summary: dict


def _closed(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, int(port))) != 0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> Done:
    workdir = tmp_path_factory.mktemp("quickstart") / "ws"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "BENTOML_"))}
    res = subprocess.run(
        [str(BIN / "mlops"), "quickstart", "--workdir", str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = res.stdout + res.stderr
    print(output)
    summary = json.loads((workdir / SUMMARY_FILE).read_text())
    return Done(workdir, res.returncode, output, summary)


def test_every_step_ran_and_its_wall_time_is_reported(done: Done) -> None:
    assert done.returncode == 0, done.output[-4000:]
    for i in range(1, 6):
        assert f"✓ [{i}/5]" in done.output
    assert "quickstart wall time per step" in done.output
    assert "dvc stage package" in done.output
    seconds = done.summary["seconds"]
    assert len(seconds) == 6 and all(v >= 0 for v in seconds.values())
    stages = done.summary["stage_seconds"]
    assert list(stages) == ["prepare", "validate", "train", "evaluate", "package", "request"]
    # the pipeline's stage output was streamed, not swallowed
    assert "Running stage 'request'" in done.output
    # the shipped policy has the server re-derive production's evidence from the DVC data,
    # which the stage pushed first; the quickstart waits for it before the approvals
    assert "request: pushed 2 data object(s) to the DVC remote" in done.output
    assert "request: iris-classifier v1 -> production: verifying (request #1)" in done.output
    assert re.search(r"server re-derived the evidence \(validation, evaluation\): \d+ values "
                     r"match; request #1 is pending", done.output)  # fmt: skip


def test_the_approved_bento_answered_a_prediction(done: Done) -> None:
    summary = done.summary
    package = json.loads((done.workdir / "project/reports/package.json").read_text())
    assert summary["bento_tag"] == package["bento_tag"] and package["passed"] is True
    assert summary["prediction"] in ([0], [1], [2])
    assert set(summary["input"]) == {
        "sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"
    }  # fmt: skip
    assert f"-> {summary['prediction']}" in done.output


def test_the_served_bento_is_the_one_in_the_approved_evidence(done: Done) -> None:
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    summary, uri = done.summary, done.summary["tracking_uri"]
    mv = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version(MODEL_NAME, "1")
    digest = summary["promotion"]["evidence_digest"]
    assert mv.tags["mlops.evidence.digest"] == digest
    assert all(a["digest"] == digest for a in summary["promotion"]["approvals"])
    path = download_artifacts(
        run_id=mv.run_id, artifact_path=mv.tags["mlops.evidence.path"], tracking_uri=uri
    )
    bundle = json.loads(Path(path).read_text())
    assert bundle["package"]["bento_tag"] == summary["bento_tag"]
    assert bundle["package"]["smoke"]["passed"] is True


def test_two_reviewers_moved_the_production_alias(done: Done) -> None:
    from mlflow.tracking import MlflowClient

    summary = done.summary
    promotion = summary["promotion"]
    assert (promotion["state"], promotion["requester"]) == ("promoted", "ci-bot")
    assert [a["user"] for a in promotion["approvals"]] == ["alice", "bob"]
    assert all(a["counts"] for a in promotion["approvals"])
    assert summary["alias_holder"]["version"] == summary["model"]["version"] == 1
    assert summary["alias_holder"]["request_id"] == promotion["id"]
    uri = summary["tracking_uri"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version_by_alias(MODEL_NAME, "production")
    assert int(mv.version) == 1
    # the version names the DVC-tracked training split it was trained on
    lock = yaml.safe_load((done.workdir / "project/dvc.lock").read_text())
    train_md5 = next(
        o["md5"] for o in lock["stages"]["prepare"]["outs"] if o["path"] == "data/train.csv"
    )
    assert client.get_run(mv.run_id).data.tags["mlops.dataset.0.md5"] == train_md5


def test_data_was_pushed_and_the_run_committed(done: Done) -> None:
    project, remote = done.workdir / "project", done.workdir / "dvc-remote"
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    for out in lock["stages"]["prepare"]["outs"]:
        md5 = out["md5"]
        assert (remote / "files" / "md5" / md5[:2] / md5[2:]).is_file()
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""


def test_everything_it_started_is_stopped(done: Done) -> None:
    summary = done.summary
    assert _gone(summary["registry_pid"])
    assert _closed(summary["registry_url"])
    assert _closed(summary["bento_url"])


def test_a_used_workdir_is_refused_naming_the_step(done: Done, capsys) -> None:
    assert run_quickstart(workdir=done.workdir) == 1
    out = capsys.readouterr().out
    assert "[1/5] create the workspace (git + DVC + pipeline) failed" in out
    assert "already exists and is not empty" in out
    assert "What to do:" in out and "--workdir" in out


def test_a_failing_pipeline_names_the_step_and_stops_the_server(tmp_path, capsys, monkeypatch):
    # a real DVC failure in step 3: a stage name the pipeline does not have
    def broken_pipeline(job: quickstart_run._Job) -> None:
        env = job.ws.process_env(MLOPS_REGISTRY_URL=job.server.url)
        cmd = [sys.executable, "-m", "dvc", "repro", "no-such-stage"]
        quickstart_run._stream(job, cmd, env=env)

    monkeypatch.setattr(quickstart_run, "_step_pipeline", broken_pipeline)
    monkeypatch.setenv("MLOPS_TRACKING_URI", "sqlite:///elsewhere.db")
    cwd = Path.cwd()

    assert run_quickstart(workdir=tmp_path / "ws") == 1

    out = capsys.readouterr().out
    assert "[3/5] run the pipeline (dvc repro, dvc push) failed" in out
    assert "`dvc repro no-such-stage` exited" in out and "What to do:" in out
    summary = json.loads((tmp_path / "ws" / SUMMARY_FILE).read_text())
    assert summary["ok"] is False
    assert summary["failed_step"] == "run the pipeline (dvc repro, dvc push)"
    assert _gone(summary["registry_pid"]) and _closed(summary["registry_url"])
    # nothing leaked into the caller's process
    assert Path.cwd() == cwd
    assert os.environ["MLOPS_TRACKING_URI"] == "sqlite:///elsewhere.db"
    assert "BENTOML_HOME" not in os.environ or os.environ["BENTOML_HOME"] != str(
        tmp_path / "ws/project/.mlops/bentoml"
    )


def test_an_interrupt_still_stops_the_server(tmp_path, monkeypatch) -> None:
    def interrupted(job: quickstart_run._Job) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the pipeline runs

    monkeypatch.setattr(quickstart_run, "_step_pipeline", interrupted)

    with pytest.raises(KeyboardInterrupt, match=r"^$"):
        run_quickstart(workdir=tmp_path / "ws")

    summary = json.loads((tmp_path / "ws" / SUMMARY_FILE).read_text())
    assert summary["ok"] is False and "prediction" not in summary
    assert _gone(summary["registry_pid"]) and _closed(summary["registry_url"])


def _processes_in(folder: Path) -> list[int]:
    """Pids whose working directory is inside ``folder``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cwd = Path(os.readlink(proc / "cwd"))
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if cwd == folder or folder in cwd.parents:
                pids.append(int(proc.name))
    return pids


def test_sigterm_while_the_pipeline_runs_stops_everything(tmp_path) -> None:
    workdir = tmp_path / "ws"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "BENTOML_"))}
    proc = subprocess.Popen(
        [str(BIN / "mlops"), "quickstart", "--workdir", str(workdir)],
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Running stage 'prepare'" in line:  # dvc repro and its first stage are running
            break
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]

    assert proc.returncode == 128 + signal.SIGTERM, output
    summary = json.loads((workdir / SUMMARY_FILE).read_text())
    assert summary["ok"] is False
    assert _gone(summary["registry_pid"]) and _closed(summary["registry_url"])
    assert _processes_in(workdir) == []
