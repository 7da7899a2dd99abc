"""``dvc repro`` in a repository of its own, beside the shared run of ``test_pipeline``
(a fresh clone of this repository): a suite that fails stops the pipeline. Real tools
throughout, as there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.pipelines._repo import make_pipeline_repo, repro

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
