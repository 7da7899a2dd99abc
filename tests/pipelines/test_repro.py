"""``dvc repro`` in repositories of their own, beside the shared run of ``test_pipeline``:
a suite that fails stops the pipeline, and a fresh clone of this repository reproduces
with no set-up. Real tools throughout, as there."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests._registry import start_registry
from tests.pipelines._repo import (
    SOURCE,
    STAGES,
    PipelineRepo,
    make_pipeline_repo,
    pipeline_env,
    read,
    repro,
)

pytestmark = pytest.mark.slow


def test_a_failing_suite_stops_the_pipeline_naming_the_expectation(tmp_path: Path) -> None:
    repo = make_pipeline_repo(tmp_path)
    suite_file = repo.root / "suites" / "iris_train.yaml"
    suite = yaml.safe_load(suite_file.read_text())
    for spec in suite["expectations"]:
        if spec["type"] == "expect_column_values_to_be_between" and (
            spec["kwargs"]["column"] == "sepal length (cm)"
        ):
            spec["kwargs"]["max_value"] = 5.0
    suite_file.write_text(yaml.safe_dump(suite))
    repo.commit("a stricter suite")

    run = repro(repo, "repro")

    assert run.returncode != 0
    assert "error: data_validation_failed: Suite 'iris_train' failed 1 expectation(s)" in run.output
    assert "expect_column_values_to_be_between[sepal length (cm)]" in run.output
    assert "failed to reproduce 'validate'" in run.output
    assert "train" not in run.seconds
    assert not (repo.root / "reports" / "model.json").exists()
    report = json.loads((repo.root / "reports" / "validation.json").read_text())
    assert report["success"] is False


def test_a_fresh_clone_is_a_dvc_project_that_reproduces(tmp_path: Path) -> None:
    """What the README says: clone, `dvc repro`, `dvc push`; no `dvc init`, no remote set-up."""
    from mlops.client import RegistryClient
    from mlops.promotion import PromotionHandle

    clone = tmp_path / "clone"
    branch = subprocess.run(
        ["git", "-C", str(SOURCE), "rev-parse", "--abbrev-ref", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    subprocess.run(["git", "clone", "-q", "--branch", branch, str(SOURCE), str(clone)], check=True)
    repo = PipelineRepo(
        root=clone, remote=clone / ".mlops" / "dvc-remote", env=pipeline_env(PYTHONPATH=str(clone))
    )
    assert (
        repo.git("rev-parse", "HEAD")
        == subprocess.run(
            ["git", "-C", str(SOURCE), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )
    assert (clone / ".dvc" / "config").is_file()
    assert str(repo.remote) in repo.dvc("remote", "list").stdout
    server = start_registry(
        tmp_path / "server",
        cli=True,
        tracking_uri=f"sqlite:///{repo.home / 'mlflow.db'}",
        policy_file=clone / "promotion-policy.yaml",
        env=repo.env,
        reconcile_interval=0,
    )
    try:
        with RegistryClient(server.url, token=server.admin_token) as admin:
            requester = admin.create_token("clone", ["requester"]).token
        repo.env.update(MLOPS_REGISTRY_URL=server.url, MLOPS_TOKEN=requester)
        run = repro(repo, "repro")
        assert run.returncode == 0, run.output[-6000:]
        assert sorted(run.seconds) == sorted(STAGES)
        doc = read(repo, "reports/promotion.json")
        assert (doc["submitted"], doc["state"], doc["experiment"]) == (True, "verifying", None)
        with RegistryClient(server.url, token=server.admin_token) as admin:
            handle = PromotionHandle(admin, admin.get_promotion(doc["id"]))
            found = handle.wait_verified().promotion  # re-derived from the remote
        assert (found.state, found.verification["state"]) == ("pending", "verified"), found
        repo.dvc("push")
        md5 = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]["prepare"]["outs"][0]
        assert (repo.remote / "files" / "md5" / md5["md5"][:2] / md5["md5"][2:]).is_file()
        assert repo.run("git", "check-ignore", "-q", ".mlops/dvc-remote").returncode == 0
        # no noise from the wrapped tools in the stages' output
        assert "INFO mlflow" not in run.output and "Downloading artifacts" not in run.output
        assert "%|" not in run.output  # a tqdm bar
        log = server.log.read_text()  # the server fetched and checked the evidence: quietly
        assert "Downloading artifacts" not in log and "%|" not in log
        assert "INFO mlflow" not in log and "INFO  [alembic" not in log
    finally:
        server.stop()
