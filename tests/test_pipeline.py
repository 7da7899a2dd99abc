"""``dvc repro`` in a fresh clone of this repository, end to end.

Real tools throughout: git, DVC with the local remote the repository configures, MLflow on
the pipeline's default SQLite store (``.mlops/`` inside the repo), Great Expectations, a
real ``bentoml build`` and served Bento, and the registry server as a separate process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests._registry import RegistryProcess, start_registry
from tests.pipelines._repo import (
    BIN,
    MODEL,
    SOURCE,
    STAGES,
    PipelineRepo,
    Repro,
    clone_project,
    read,
    repro,
)

pytestmark = pytest.mark.slow


def mlflow_counts(repo: PipelineRepo) -> dict[str, int]:
    """Runs and model versions in the pipeline's MLflow store (a client on its URI)."""
    from mlflow import MlflowClient

    tracking = f"sqlite:///{repo.home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return {
        "runs": len(client.search_runs(experiments, max_results=1000)),
        "versions": len(client.search_model_versions(f"name = '{MODEL}'")),
    }


def library(repo: PipelineRepo, expression: str) -> object:
    """Evaluate ``expression`` with ``mlops`` as a user inside the pipeline repo would: the
    repo as the cwd and the pipeline's environment (no ``MLOPS_*``: the stores in ``.mlops``).
    The result goes through JSON, as the stages' reports do."""
    import mlflow

    import mlops
    import mlops.data
    import mlops.evidence
    import mlops.registry

    uris = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo.root)
        # every variable recorded (MLflow exports the URIs it is given), then the repo's env
        for key in {*os.environ, *repo.env, "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"}:
            mp.setenv(key, repo.env.get(key, ""))
            if key not in repo.env:
                mp.delenv(key)
        try:
            value = eval(expression, {"mlops": mlops})
        finally:  # MLflow keeps the URIs mlops set; the next test gets the old ones back
            mlflow.set_tracking_uri(uris[0])
            mlflow.set_registry_uri(uris[1])
    return json.loads(json.dumps(value))


@dataclass(frozen=True)
class Pipeline:
    repo: PipelineRepo
    server: RegistryProcess
    first: Repro
    second: Repro
    after_first: dict[str, int]
    after_second: dict[str, int]
    promotions_first: int
    promotions_second: int


def _promotions(server: RegistryProcess) -> int:
    from mlops.client import RegistryClient

    with RegistryClient(server.url, token=server.admin_token) as client:
        return len(list(client.list_promotions(model=MODEL)))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """A fresh clone's pipeline run twice (commit in between) against a live registry server."""
    from mlops.client import RegistryClient

    base = tmp_path_factory.mktemp("pipeline")
    repo = clone_project(base)
    server = start_registry(
        base / "server",
        cli=True,
        tracking_uri=f"sqlite:///{repo.home / 'mlflow.db'}",
        policy_file=repo.root / "promotion-policy.yaml",
        env=repo.env,
        reconcile_interval=0,
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


def test_a_fresh_clone_is_a_dvc_project_that_reproduces(pipeline: Pipeline) -> None:
    """What the README says: clone, `dvc repro`, `dvc push`; no `dvc init`, no remote set-up."""
    repo = pipeline.repo
    head = subprocess.run(
        ["git", "-C", str(SOURCE), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    # the clone's commits: the checkout's HEAD (+ its uncommitted work), "pipeline run 1"
    assert head in (repo.git("rev-parse", "HEAD~1"), repo.git("rev-parse", "HEAD~2"))
    assert (repo.root / ".dvc" / "config").is_file()
    assert pipeline.first.returncode == 0 and sorted(pipeline.first.seconds) == sorted(STAGES)
    repo.dvc("push")
    md5 = yaml.safe_load((repo.root / "dvc.lock").read_text())["stages"]["prepare"]["outs"]
    assert (repo.remote / "files" / "md5" / md5[0]["md5"][:2] / md5[0]["md5"][2:]).is_file()
    assert repo.run("git", "check-ignore", "-q", ".mlops/dvc-remote").returncode == 0
    # no noise from the wrapped tools in the stages' output
    output = pipeline.first.output
    assert "INFO mlflow" not in output and "Downloading artifacts" not in output
    assert "%|" not in output  # a tqdm bar
    log = pipeline.server.log.read_text()  # the server fetched and checked the evidence: quietly
    assert "Downloading artifacts" not in log and "%|" not in log
    assert "INFO mlflow" not in log and "INFO  [alembic" not in log


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


def _settled(server: Any, promotion_id: int) -> Any:
    """The request once the server's verifier is done with it (``verifying`` no more)."""
    from mlops.client import RegistryClient
    from mlops.promotion import PromotionHandle

    with RegistryClient(server.url, token=server.admin_token) as admin:
        handle = PromotionHandle(admin, admin.get_promotion(promotion_id))
        return handle.wait_verified().promotion


def test_promotion_request_is_verified_by_the_server_then_pending(pipeline: Pipeline) -> None:
    """The shipped policy has the server re-derive production's evidence: the stage pushes
    the data it names to the DVC remote before it requests, so nothing waits on `dvc push`."""
    repo = pipeline.repo
    doc = read(repo, "reports/promotion.json")
    assert (doc["submitted"], doc["state"], doc["target"]) == (True, "verifying", "production")
    assert doc["verdict"]["passed"] is True
    assert "request: pushed 2 data object(s) to the DVC remote" in pipeline.first.output
    lock = yaml.safe_load((repo.root / "dvc.lock").read_text())
    for out in lock["stages"]["prepare"]["outs"]:  # train.csv and eval.csv, by md5
        assert (repo.remote / "files" / "md5" / out["md5"][:2] / out["md5"][2:]).is_file()
    promotion = _settled(pipeline.server, doc["id"])
    assert (promotion.model, promotion.version, promotion.state) == (MODEL, 1, "pending")
    assert promotion.verification["state"] == "verified", promotion.verification
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


def _exp_promotion(repo: PipelineRepo, name: str) -> dict:
    return json.loads(repo.git("show", f"{_exp_rev(repo, name)}:reports/promotion.json"))


def _exp_rev(repo: PipelineRepo, name: str) -> str:
    shown = json.loads(repo.dvc("exp", "show", "--json").stdout)
    for baseline in shown:
        for exp in baseline.get("experiments") or ():
            if exp.get("name") == name:
                return exp["revs"][0]["rev"]
    raise AssertionError(f"no experiment {name!r} in {shown}")


def test_a_sweep_of_experiments_submits_nothing_and_one_is_requested_on_purpose(
    pipeline: Pipeline,
) -> None:
    repo = pipeline.repo
    before = _promotions(pipeline.server)
    home = {"MLOPS_HOME": str(repo.home)}  # a --temp run shares the workspace's stores
    # one run of each kind: in a temporary folder (as queued runs are) and in the workspace
    sweep = {"sweep-temp": ("--temp", "0.25"), "sweep-a": ("", "2.0")}
    for name, (where, c) in sweep.items():
        args = ["exp", "run", "-n", name, "-S", f"train.C={c}", *([where] if where else [])]
        proc = subprocess.run(
            [str(BIN / "dvc"), *args],
            cwd=repo.root,
            env={**repo.env, **home},
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        if not where:  # a --temp run keeps its stages' output to itself
            said = f"experiment '{name}' not submitted: mlops request --from-exp {name}"
            assert said in proc.stdout, proc.stdout[-3000:]
    assert _promotions(pipeline.server) == before  # nothing reached the review queue
    assert mlflow_counts(repo) == {"runs": 3, "versions": 3}
    docs = {name: _exp_promotion(repo, name) for name in sweep}
    for name, doc in docs.items():
        got = (doc["experiment"], doc["submitted"], doc["state"])
        assert got == (name, False, "not_submitted"), doc
    assert sorted(d["version"] for d in docs.values()) == [2, 3]

    chosen = docs["sweep-temp"]
    # its data is named in the workspace's remote, not in one inside DVC's temporary copy
    # (the repository's remote is a relative path, which resolved into the copy)
    bundle = library(repo, f"mlops.evidence.load({MODEL!r}, {chosen['version']}).to_dict()")
    for report in (*bundle["validation"], bundle["evaluation"]):
        assert report["dataset"]["remote"] == str(repo.remote), report["dataset"]
    out = repo.run(str(BIN / "mlops"), "request", "--from-exp", "sweep-temp", "--json")
    request = json.loads(out.stdout)
    assert (request["model"], request["version"]) == (MODEL, chosen["version"])
    assert (request["target"], request["state"]) == ("production", "verifying")
    assert request["evidence_digest"] == chosen["evidence_digest"]
    assert _promotions(pipeline.server) == before + 1
    missing = repo.run(str(BIN / "mlops"), "request", "--from-exp", "no-such-exp", check=False)
    assert missing.returncode == 1 and "not_found: No DVC experiment" in missing.stderr
    assert "mlops request --from-exp NAME" in missing.stderr


def test_serve_runs_the_bento_approved_for_the_alias(pipeline: Pipeline) -> None:
    from mlops.client import RegistryClient
    from tests.conftest import free_port, stop_process, wait_for_http

    repo, server = pipeline.repo, pipeline.server
    with RegistryClient(server.url, token=server.admin_token) as admin:
        (open_,) = [p for p in admin.list_promotions(model=MODEL) if p.state == "verifying"] or [
            p for p in admin.list_promotions(model=MODEL, state="pending")
        ]
        pending = _settled(server, open_.id)
        assert pending.state == "pending", pending
        approvers = [admin.create_token(u, ["approver"]).token for u in ("ann", "bob")]
    for token in approvers:
        with RegistryClient(server.url, token=token) as client:
            client.approve(pending.id, comment="evidence looks right")
    with RegistryClient(server.url, token=server.admin_token) as admin:
        deadline = time.monotonic() + 60
        while admin.get_promotion(pending.id).state != "promoted":
            assert time.monotonic() < deadline, admin.get_promotion(pending.id)
            time.sleep(0.5)
    approved = library(repo, f"mlops.evidence.load({MODEL!r}, {pending.version}).package")
    tag = approved["bento_tag"]
    assert tag != read(repo, "reports/package.json")["bento_tag"]  # not the workspace's latest
    assert tag.split(":")[1].startswith(f"v{pending.version}-")
    dry = repo.run(str(BIN / "mlops"), "serve", f"{MODEL}@production", "--dry-run")
    assert dry.stdout.strip() == tag

    port = free_port()
    log = repo.root.parent / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "mlops"), "serve", f"{MODEL}@production", "--port", str(port)],
            cwd=repo.root / "reports",
            env=repo.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", timeout=120, proc=proc)
        import httpx

        rows = [dict.fromkeys(["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                               "petal width (cm)"], 1.0)]  # fmt: skip
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"data": rows}, timeout=30)
        assert answer.status_code == 200 and len(answer.json()) == 1, answer.text
    finally:
        stop_process(proc)
    served = f"serving {tag} ({MODEL}@production, evidence approved in request #{pending.id})"
    assert served in log.read_text()


def test_mlops_env_lets_mlflow_bentoml_and_dvc_see_the_project_stores(pipeline: Pipeline) -> None:
    repo = pipeline.repo
    cwd = repo.root / "reports"  # anywhere inside the project

    def after_env(command: str) -> str:
        res = subprocess.run(
            ["bash", "-c", f'eval "$(mlops env)" && {command}'],
            cwd=cwd,
            env=repo.env,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
        return res.stdout

    model = read(repo, "reports/model.json")
    run = json.loads(after_env(f"mlflow runs describe --run-id {model['run_id']}"))
    assert run["info"]["run_id"] == model["run_id"]  # MLflow's own CLI reads the pipeline's store
    assert "mlops" in after_env("mlflow experiments search")
    bentos = json.loads(after_env(f"bentoml list {MODEL} -o json"))
    assert read(repo, "reports/package.json")["bento_tag"] in [b["tag"] for b in bentos]
    assert str(repo.remote) in after_env("dvc remote list")
    assert not (cwd / "mlflow.db").exists() and not (repo.root / "mlflow.db").exists()
    exports = json.loads(repo.run(str(BIN / "mlops"), "env", "--json").stdout)
    assert exports["BENTOML_HOME"] == str(repo.home / "bentoml")
    assert exports["MLFLOW_TRACKING_URI"] == f"sqlite:///{repo.home / 'mlflow.db'}"


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
    # the blocked version's Bento is discarded, and its tag says so
    assert (
        not (repo.home / "bentoml" / "bentos" / doc["model"])
        .joinpath(read(repo, "reports/package.json")["bento_tag"].split(":")[1])
        .exists()
    )
    bento = library(repo, f"mlops.registry.get({MODEL!r}, {doc['version']}).tags['mlops.bento']")
    assert bento.endswith("(discarded)")

    strict = repro(repo, "exp", "run", "-S", "promotion.fail_if_blocked=true")

    assert strict.returncode != 0
    assert re.search(r"error: policy_violation: iris-classifier v\d+ may not be promoted",
                     strict.output)  # fmt: skip
    assert "checks.metrics.accuracy" in strict.output
