"""``dvc repro`` of the repository's pipeline in a temporary git + DVC repo, end to end.

Real tools throughout: git, DVC with a local remote, MLflow on the pipeline's default
SQLite store (``.mlops/`` inside the repo), Great Expectations, a real ``bentoml build`` and
served Bento, and the registry server as a separate process.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.pipelines._repo import BIN, PipelineRepo, make_pipeline_repo
from tests.pipelines._server import RegistryServer, start_registry_server

pytestmark = pytest.mark.slow

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


def mlflow_counts(repo: PipelineRepo) -> dict[str, int]:
    """Runs and model versions in the pipeline's MLflow store (asked in a fresh process)."""
    code = (
        "import json, mlflow; from mlflow import MlflowClient; "
        "c = MlflowClient(); exps = [e.experiment_id for e in c.search_experiments()]; "
        "print(json.dumps({'runs': len(c.search_runs(exps, max_results=1000)), "
        f"'versions': len(c.search_model_versions(\"name = '{MODEL}'\"))}}))"
    )
    tracking = f"sqlite:///{repo.home / 'mlflow.db'}"
    out = subprocess.run(
        [str(BIN / "python"), "-c", code],
        cwd=repo.root,
        env={**repo.env, "MLFLOW_TRACKING_URI": tracking, "MLFLOW_REGISTRY_URI": tracking},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def library(repo: PipelineRepo, expression: str) -> object:
    """Evaluate ``expression`` with ``mlops`` in a fresh process inside the pipeline repo."""
    code = (
        "import json, mlops, mlops.registry, mlops.data, mlops.evidence; "
        f"print(json.dumps({expression}))"
    )
    out = repo.run(str(BIN / "python"), "-c", code).stdout
    return json.loads(out.strip().splitlines()[-1])


def read(repo: PipelineRepo, path: str) -> dict:
    return json.loads((repo.root / path).read_text())


@dataclass(frozen=True)
class Pipeline:
    repo: PipelineRepo
    server: RegistryServer
    first: Repro
    second: Repro
    after_first: dict[str, int]
    after_second: dict[str, int]
    promotions_first: int
    promotions_second: int


def _promotions(server: RegistryServer) -> int:
    from mlops.client import RegistryClient

    with RegistryClient(server.url, token=server.admin_token) as client:
        return len(list(client.list_promotions(model=MODEL)))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """The pipeline run twice (commit in between) against a live registry server."""
    from mlops.client import RegistryClient

    base = tmp_path_factory.mktemp("pipeline")
    repo = make_pipeline_repo(base)
    server = start_registry_server(
        base / "server",
        tracking_uri=f"sqlite:///{repo.home / 'mlflow.db'}",
        policy_path=repo.root / "promotion-policy.yaml",
        env=repo.env,
    )
    try:
        with RegistryClient(server.url, token=server.admin_token) as admin:
            requester = admin.create_token("pipeline", ["requester"]).token
        repo.env.update(MLOPS_REGISTRY_URL=server.url, MLOPS_TOKEN=requester)
        first = repro(repo, "repro")
        assert first.returncode == 0, first.output[-6000:]
        after_first, promotions_first = mlflow_counts(repo), _promotions(server)
        repo.commit("pipeline run 1")
        second = repro(repo, "repro")
        assert second.returncode == 0, second.output[-6000:]
        print("\nper-stage wall time of the first `dvc repro` (s):", first.seconds)
        yield Pipeline(
            repo=repo,
            server=server,
            first=first,
            second=second,
            after_first=after_first,
            after_second=mlflow_counts(repo),
            promotions_first=promotions_first,
            promotions_second=_promotions(server),
        )
    finally:
        server.stop()


def test_repro_runs_every_stage_in_dependency_order(pipeline: Pipeline) -> None:
    ran = re.findall(r"Running stage '([\w-]+)'", pipeline.first.output)
    assert sorted(ran) == sorted(STAGES)
    edges = ["prepare>validate", "validate>train", "train>evaluate", "train>package",
             "evaluate>request", "package>request"]  # fmt: skip
    for before, after in (edge.split(">") for edge in edges):
        assert ran.index(before) < ran.index(after)


def test_data_is_split_tracked_in_the_lock_and_pushable(pipeline: Pipeline) -> None:
    repo = pipeline.repo
    lock = yaml.safe_load((repo.root / "dvc.lock").read_text())
    outs = {o["path"]: o for o in lock["stages"]["prepare"]["outs"]}
    assert set(outs) == {"data/train.csv", "data/eval.csv"}
    assert len((repo.root / "data/train.csv").read_text().splitlines()) == 1 + 105
    assert len((repo.root / "data/eval.csv").read_text().splitlines()) == 1 + 45
    repo.dvc("push")
    md5 = outs["data/train.csv"]["md5"]
    assert (repo.remote / "files" / "md5" / md5[:2] / md5[2:]).is_file()
    assert ".mlops" not in json.dumps(lock)


def test_validation_report_is_written_and_passed(pipeline: Pipeline) -> None:
    report = read(pipeline.repo, "reports/validation.json")
    assert (report["suite"], report["success"], report["rows"]) == ("iris_train", True, 105)
    assert report["statistics"]["unsuccessful"] == 0
    assert read(pipeline.repo, "metrics/validation.json")["success_percent"] == 100.0


def test_model_is_registered_with_the_lineage_of_the_train_split(pipeline: Pipeline) -> None:
    repo = pipeline.repo
    model = read(repo, "reports/model.json")
    assert (model["name"], model["version"]) == (MODEL, 1)
    lineage = library(repo, f"mlops.registry.lineage({MODEL!r}, 1).to_dict()")
    assert lineage["run_id"] == model["run_id"]
    (dataset,) = lineage["datasets"]
    # the md5 the run recorded is DVC's own answer for the file, now committed
    recorded = library(repo, "mlops.data.version('data/train.csv').to_dict()")
    assert (dataset["path"], dataset["md5"]) == ("data/train.csv", recorded["md5"])
    assert dataset["remote"] == str(repo.remote)


def test_metrics_and_plots_are_what_dvc_shows(pipeline: Pipeline) -> None:
    repo = pipeline.repo
    metrics = read(repo, "metrics/eval.json")
    assert metrics["accuracy"] >= 0.8 and metrics["passed"] is True
    assert metrics["champion_version"] is None and metrics["rows"] == 45
    shown = json.loads(repo.dvc("metrics", "show", "--json").stdout)
    (workspace,) = (rev["data"] for rev in shown.values())  # only the workspace
    assert workspace["metrics/eval.json"]["data"]["accuracy"] == metrics["accuracy"]
    assert workspace["metrics/validation.json"]["data"]["success"] is True

    plots = json.loads(repo.dvc("plots", "show", "--json").stdout)["data"]
    assert {"plots/confusion.csv", "plots/roc.csv"} <= set(plots)
    confusion = plots["plots/confusion.csv"][0]["content"]
    assert confusion["data"]["values"][0].keys() >= {"actual", "predicted"}
    assert len(confusion["data"]["values"]) == 45
    roc = (repo.root / "plots/roc.csv").read_text().splitlines()
    assert roc[0] == "fpr,tpr" and roc[1] == "0.0,0.0" and roc[-1] == "1.0,1.0"
    evaluation = read(repo, "reports/evaluation.json")
    assert evaluation["candidate_version"] == 1 and evaluation["champion_alias"] == "production"


def test_bento_is_built_and_smoke_tested(pipeline: Pipeline) -> None:
    report = read(pipeline.repo, "reports/package.json")
    assert report["passed"] is True, report
    assert report["smoke"]["rows"] == 10 and report["smoke"]["mismatches"] == 0
    assert report["bento_tag"].startswith(MODEL)
    name, version = report["bento_tag"].split(":")
    assert (pipeline.repo.home / "bentoml" / "bentos" / name / version).is_dir()


def test_promotion_request_is_pending_on_the_server(pipeline: Pipeline) -> None:
    from mlops.client import RegistryClient

    repo = pipeline.repo
    doc = read(repo, "reports/promotion.json")
    assert (doc["submitted"], doc["state"], doc["target"]) == (True, "pending", "production")
    assert doc["verdict"]["passed"] is True
    with RegistryClient(pipeline.server.url, token=pipeline.server.admin_token) as client:
        promotion = client.get_promotion(doc["id"])
    assert (promotion.model, promotion.version, promotion.state) == (MODEL, 1, "pending")
    assert promotion.requester == "pipeline"
    tag = library(repo, f"mlops.registry.get({MODEL!r}, 1).tags['mlops.evidence.digest']")
    assert promotion.evidence_digest == doc["evidence_digest"] == tag


def test_evidence_names_the_validated_and_evaluated_data_as_dvc_lock_records_it(
    pipeline: Pipeline,
) -> None:
    """Inside `dvc repro` prepare's outputs are recorded only in the workspace dvc.lock: the
    reports still name them by path + md5, at the commit the run was based on."""
    repo = pipeline.repo
    lock = yaml.safe_load((repo.root / "dvc.lock").read_text())
    md5 = {o["path"]: o["md5"] for o in lock["stages"]["prepare"]["outs"]}
    run_base = repo.git("rev-parse", "HEAD~1")  # the commit before "pipeline run 1"
    bundle = library(repo, f"mlops.evidence.load({MODEL!r}, 1).to_dict()")
    (validation,) = bundle["validation"]
    evaluation = bundle["evaluation"]
    for report, path in ((validation, "data/train.csv"), (evaluation, "data/eval.csv")):
        dataset = report["dataset"]
        assert (dataset["path"], dataset["md5"]) == (path, md5[path])
        assert (dataset["rev"], dataset["committed"]) == (run_base, False)
        assert (dataset["remote"], dataset["repo"]) == (str(repo.remote), str(repo.root))
    assert validation == read(repo, "reports/validation.json")
    assert evaluation == read(repo, "reports/evaluation.json")
    assert validation["rows"] == 105 and evaluation["rows"] == 45
    # once committed, the library's version of the same path is the same data
    committed = library(repo, "mlops.data.version('data/eval.csv').to_dict()")
    assert committed["md5"] == md5["data/eval.csv"] and "committed" not in committed


def test_second_repro_does_nothing(pipeline: Pipeline) -> None:
    assert pipeline.second.seconds == {}
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in pipeline.second.output
    assert pipeline.after_second == pipeline.after_first == {"runs": 1, "versions": 1}
    assert pipeline.promotions_second == pipeline.promotions_first == 1
    status = pipeline.repo.dvc("status").stdout
    assert "Data and pipelines are up to date." in status
    assert pipeline.repo.git("status", "--porcelain") == ""


def test_an_experiment_with_a_changed_param_reruns_from_train(pipeline: Pipeline) -> None:
    repo = pipeline.repo
    run = repro(repo, "exp", "run", "-S", "train.C=0.5")
    assert run.returncode == 0, run.output[-6000:]
    assert set(run.seconds) == {"train", "evaluate", "package", "request"}
    diff = json.loads(repo.dvc("params", "diff", "--json").stdout)
    changed = diff["params.yaml"]["train.C"]
    assert (changed["old"], changed["new"]) == (1.0, 0.5)
    assert read(repo, "reports/model.json")["version"] == 2
    assert mlflow_counts(repo) == {"runs": 2, "versions": 2}
    doc = read(repo, "reports/promotion.json")
    assert (doc["version"], doc["state"]) == (2, "pending")
    from mlops.client import RegistryClient

    with RegistryClient(pipeline.server.url, token=pipeline.server.admin_token) as client:
        states = {p.version: p.state for p in client.list_promotions(model=MODEL)}
    assert states == {1: "superseded", 2: "pending"}


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


def test_request_without_a_reachable_server_fails_naming_the_url(pipeline: Pipeline) -> None:
    from tests.conftest import free_port

    repo = pipeline.repo
    dead = f"http://127.0.0.1:{free_port()}"
    res = subprocess.run(
        [str(BIN / "python"), "-m", "pipelines.request"],
        cwd=repo.root,
        env={**repo.env, "MLOPS_REGISTRY_URL": dead},
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1
    assert "error: registry_unavailable:" in res.stderr
    assert dead in res.stderr


def test_a_stricter_policy_blocks_the_request_and_can_fail_the_stage(pipeline: Pipeline) -> None:
    repo = pipeline.repo
    policy_file = repo.root / "promotion-policy.yaml"
    policy = yaml.safe_load(policy_file.read_text())
    policy["targets"]["production"]["checks"]["metrics"]["accuracy"]["threshold"] = 0.999
    policy_file.write_text(yaml.safe_dump(policy))

    lenient = repro(repo, "repro")

    assert lenient.returncode == 0, lenient.output[-6000:]
    assert set(lenient.seconds) == {"evaluate", "request"}
    doc = read(repo, "reports/promotion.json")
    assert (doc["state"], doc["submitted"], doc["id"]) == ("blocked", False, None)
    assert any(b.startswith("checks.metrics.accuracy:") for b in doc["blocked_by"])
    assert "blocked by checks.metrics.accuracy" in lenient.output
    assert _promotions(pipeline.server) == 2  # nothing new was sent

    strict = repro(repo, "exp", "run", "-S", "promotion.fail_if_blocked=true")

    assert strict.returncode != 0
    assert "error: policy_violation: iris-classifier v2 may not be promoted" in strict.output
    assert "checks.metrics.accuracy" in strict.output
