"""The code path of `make quickstart`: a throwaway workspace, end to end, on real tools."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlops.quickstart import MODEL_NAME, SUMMARY_FILE, run_quickstart
from tests.conftest import BIN, run


def test_quickstart_registers_a_model_with_its_data_lineage(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLOPS_TRACKING_URI", "sqlite:///elsewhere.db")
    cwd = Path.cwd()
    workdir = tmp_path / "qs"

    assert run_quickstart(workdir=workdir) == 0

    # nothing leaked out of the workspace
    assert Path.cwd() == cwd
    assert os.environ["MLOPS_TRACKING_URI"] == "sqlite:///elsewhere.db"
    out = capsys.readouterr().out
    assert "[5/5] read the lineage back" in out and MODEL_NAME in out

    summary = json.loads((workdir / SUMMARY_FILE).read_text())
    project = workdir / "project"
    (ds,) = summary["lineage"]["datasets"]
    listing = json.loads(
        run(
            [
                str(BIN / "dvc"),
                "ls",
                "--json",
                "--show-hash",
                str(project),
                "data",
                "--rev",
                ds["rev"],
            ]
        )
    )
    (entry,) = [e for e in listing if e["path"] == "iris.csv"]
    assert ds["md5"] == entry["md5"]
    assert ds["rev"] == run(["git", "rev-parse", "HEAD"], cwd=project).strip()
    assert ds["remote"] == str(workdir / "dvc-remote")
    assert (workdir / "dvc-remote" / "files" / "md5" / ds["md5"][:2] / ds["md5"][2:]).is_file()

    uri = summary["tracking_uri"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version(MODEL_NAME, "1")
    assert mv.status == "READY"
    assert mv.run_id == summary["lineage"]["run_id"]
    tags = client.get_run(mv.run_id).data.tags
    assert tags["mlops.dataset.0.md5"] == ds["md5"]
    assert summary["accuracy"] > 0.8
    assert summary["tracking_uri"] == f"sqlite:///{project / '.mlops' / 'mlflow.db'}"

    # a second run into the same folder names the failed step and what to do
    assert run_quickstart(workdir=workdir) == 1
    out = capsys.readouterr().out
    assert "[1/5] create a git + DVC project failed" in out
    assert "already exists and is not empty" in out
    assert "What to do:" in out
