"""The evidence bundle: canonical digest, MLflow record/load round trip, tamper refusal."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest

from mlops import evidence
from mlops.errors import EvidenceError, EvidenceMismatch
from mlops.evidence import Evidence
from tests import _evidence
from tests.test_evaluation import log_model, register


def bundle(name: str = "churn", version: int = 3, run_id: str | None = "r1") -> dict[str, Any]:
    """A complete schema-1 bundle with one of every section, and a dataset in its lineage."""
    return _evidence.bundle(
        name, version, run_id, accuracy=0.93, datasets=[_evidence.DATASET], git_commit="c" * 40
    )


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(b: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = b
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return change


# --- canonical form and digest ---------------------------------------------------------
def test_digest_is_stable_for_equal_inputs() -> None:
    a, b = Evidence.from_dict(bundle()), Evidence.from_dict(copy.deepcopy(bundle()))
    reordered = dict(reversed(list(bundle().items())))

    assert a.digest == b.digest == Evidence.from_dict(reordered).digest
    assert a == b and hash(a) == hash(b)
    assert a.digest == evidence.digest_of(bundle())
    assert a.to_json() == evidence.canonical_json(bundle())
    assert len(a.digest) == 64 and int(a.digest, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        _set("lineage.datasets.0.md5", "1" * 32),
        _set("model.version", 4),
        _set("validation.0.success", False),
        _set("validation.0.suite", "iris_eval"),
        _set("evaluation.metrics.candidate.accuracy", 0.9300001),
        _set("package.smoke.passed", False),
        _set("lineage.git_commit", "e" * 40),
    ],
    ids=["data-md5", "model-version", "validation-result", "suite", "metric", "smoke", "commit"],
)
def test_digest_changes_when_any_input_changes(change: Callable[[dict[str, Any]], None]) -> None:
    changed = bundle()
    change(changed)
    assert Evidence.from_dict(changed).digest != Evidence.from_dict(bundle()).digest


def test_evidence_copies_its_inputs_so_the_digest_cannot_drift() -> None:
    source = bundle()
    ev = Evidence.from_dict(source)
    before = ev.digest
    source["evaluation"]["metrics"]["candidate"]["accuracy"] = 0.1
    ev.to_dict()["evaluation"]["passed"] = False

    assert ev.digest == before == evidence.digest_of(ev.to_dict())
    assert ev.evaluation["metrics"]["candidate"]["accuracy"] == 0.93


def test_canonical_json_refuses_nan_and_non_json_values() -> None:
    with pytest.raises(EvidenceError, match="no NaN/inf"):
        evidence.canonical_json({"accuracy": float("nan")})
    with pytest.raises(EvidenceError, match="must be plain JSON"):
        evidence.canonical_json({"when": object()})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.pop("package"), r"missing \['package'\], unknown \[\]"),
        (lambda b: b.update(extra=1), r"missing \[\], unknown \['extra'\]"),
        (_set("schema", 2), "Evidence schema 2 is not supported"),
        (_set("model.version", "3"), "'model.version' must be an integer"),
        (_set("validation", {}), "'validation' must be a list"),
        (_set("evaluation", [1]), "'evaluation' must be an object or null"),
    ],
)
def test_malformed_bundles_are_refused_naming_the_key(change: Any, message: str) -> None:
    broken = bundle()
    change(broken)
    with pytest.raises(EvidenceError, match=message):
        Evidence.from_dict(broken)


def test_from_json_round_trips_and_checks_the_expected_digest() -> None:
    ev = Evidence.from_dict(bundle())

    assert evidence.from_json(ev.to_json(), expected_digest=ev.digest) == ev
    pretty = json.dumps(bundle(), indent=2).encode()
    assert evidence.from_json(pretty, expected_digest=ev.digest).digest == ev.digest
    tampered = bundle()
    tampered["evaluation"]["passed"] = False
    other = evidence.digest_of(tampered)
    with pytest.raises(EvidenceMismatch, match=rf"hashes to {other}, not the expected {ev.digest}"):
        evidence.from_json(json.dumps(tampered).encode(), expected_digest=ev.digest)
    with pytest.raises(EvidenceMismatch, match=rf"not valid JSON .* {ev.digest}"):
        evidence.from_json(b"{not json", expected_digest=ev.digest)


def test_str_and_html_summarise_each_section() -> None:
    ev = Evidence.from_dict(bundle())
    text = str(ev)

    assert text.splitlines()[0] == f"Evidence for churn v3 (sha256 {ev.digest[:12]})"
    assert "data/iris.csv@3f2a9c0d (md5 5ba2c4a1)" in text
    assert "PASS validation iris_train PASS" in text
    assert "accuracy 0.93; no champion" in text
    assert "churn:v3abc; smoke PASS" in text
    html = ev._repr_html_()
    assert ev.digest in html and "<table>" in html and "iris_train" in html


# --- recorded in MLflow ----------------------------------------------------------------
@pytest.fixture(scope="module")
def run_id(mlflow_home: Path) -> str:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True, as_frame=True)
    return log_model(LogisticRegression(max_iter=500).fit(x, y))


def _artifact_file(run_id: str, relpath: str) -> Path:
    import mlflow

    root = urlparse(mlflow.MlflowClient().get_run(run_id).info.artifact_uri)
    assert root.scheme == "file", root
    return Path(unquote(root.path)) / relpath


def test_record_then_load_round_trips_and_tags_the_version(run_id: str, model_name: str) -> None:
    import mlflow

    version = register(run_id, model_name)
    ev = Evidence.from_dict(bundle(model_name, version, run_id))

    digest = evidence.record(ev)

    assert digest == ev.digest
    tags = mlflow.MlflowClient().get_model_version(model_name, str(version)).tags
    assert tags["mlops.evidence.digest"] == digest
    assert tags["mlops.evidence.path"] == f"mlops/evidence/{digest}.json"
    assert _artifact_file(run_id, ev.path).read_bytes() == ev.to_json()
    assert evidence.load(model_name, version) == ev
    assert evidence.load(model_name, str(version), digest=digest).to_dict() == ev.to_dict()


def test_load_follows_the_latest_record_and_still_reads_older_digests(
    run_id: str, model_name: str
) -> None:
    version = register(run_id, model_name)
    first = Evidence.from_dict(bundle(model_name, version, run_id))
    changed = bundle(model_name, version, run_id)
    changed["package"]["smoke"]["passed"] = False
    second = Evidence.from_dict(changed)
    evidence.record(first)
    evidence.record(second)

    assert evidence.load(model_name, version) == second
    assert evidence.load(model_name, version, digest=first.digest) == first


def test_a_tampered_artifact_is_refused(run_id: str, model_name: str) -> None:
    version = register(run_id, model_name)
    ev = Evidence.from_dict(bundle(model_name, version, run_id))
    evidence.record(ev)
    tampered = ev.to_dict()
    tampered["evaluation"]["metrics"]["candidate"]["accuracy"] = 0.99
    _artifact_file(run_id, ev.path).write_bytes(evidence.canonical_json(tampered))

    with pytest.raises(
        EvidenceMismatch,
        match=rf"hashes to {evidence.digest_of(tampered)}, not the expected {ev.digest}",
    ):
        evidence.load(model_name, version)


def test_load_without_recorded_evidence_says_how_to_record_it(run_id: str, model_name: str) -> None:
    version = register(run_id, model_name)
    with pytest.raises(EvidenceError, match=rf"'{model_name}' version {version} has no recorded"):
        evidence.load(model_name, version)
    with pytest.raises(EvidenceError, match="Could not read evidence artifact"):
        evidence.load(model_name, version, digest="f" * 64)
    with pytest.raises(EvidenceError, match="64 lowercase hex characters; got 'abc'"):
        evidence.load(model_name, version, digest="abc")


def test_record_refuses_evidence_naming_another_run(run_id: str, model_name: str) -> None:
    version = register(run_id, model_name)
    ev = Evidence.from_dict(bundle(model_name, version, "some-other-run"))
    with pytest.raises(EvidenceError, match=rf"names run some-other-run, but '{model_name}'"):
        evidence.record(ev)


# --- collected from the registry ---------------------------------------------------------
def test_collect_reads_lineage_and_binds_the_reports(run_id: str, model_name: str) -> None:
    from sklearn.datasets import load_iris

    from mlops.evaluation import evaluate

    version = register(run_id, model_name)
    frame = load_iris(as_frame=True).frame
    report = evaluate(model_name, version, data=frame, target="target", log=False)
    validations = bundle()["validation"] * 2
    validations[1] = {**validations[1], "suite": "a_first_suite"}

    ev = evidence.collect(model_name, version, validation=validations, evaluation=report)
    again = evidence.collect(
        model_name, version, validation=list(reversed(validations)), evaluation=report.to_dict()
    )

    assert ev.model == {"name": model_name, "version": version, "run_id": run_id}
    assert ev.lineage["datasets"] == []
    assert ev.evaluation == report.to_dict()
    assert ev.package is None
    assert [v["suite"] for v in ev.validation] == ["a_first_suite", "iris_train"]
    assert again.digest == ev.digest  # order of the inputs does not matter
    assert evidence.load(model_name, version, digest=evidence.record(ev)) == ev


def test_collect_refuses_an_evaluation_of_another_version(run_id: str, model_name: str) -> None:
    version = register(run_id, model_name)
    other = bundle(model_name, version + 1)["evaluation"]
    with pytest.raises(EvidenceError, match=rf"is for '{model_name}' version {version + 1}, not"):
        evidence.collect(model_name, version, evaluation=other)


def test_collect_takes_dataset_lineage_from_the_run(
    dvc_repo: Any, mlflow_home: Path, model_name: str
) -> None:
    import mlflow
    from sklearn.linear_model import LogisticRegression

    import mlops

    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0, 0, 1, 1]})
    (dvc_repo.root / "train.csv").write_text(frame.to_csv(index=False))
    dvc_repo.dvc("add", "train.csv")
    commit = dvc_repo.commit("train data")
    ds = mlops.data.version("train.csv")
    model = LogisticRegression().fit(frame[["x"]], frame["y"])
    with mlops.start_run("lineage", datasets=[ds]) as run:
        mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    version = register(run.run_id, model_name)

    ev = evidence.collect(model_name, version)

    assert ev.lineage["git_commit"] == commit
    assert ev.lineage["datasets"] == [ds.to_dict()]
    assert ev.run_id == run.run_id


# --- over HTTP --------------------------------------------------------------------------
@pytest.mark.slow
def test_record_and_load_through_a_real_mlflow_server(
    mlflow_server: Any, mlflow_home: Path, model_name: str
) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlops.tracking import configure

    x, y = load_iris(return_X_y=True, as_frame=True)
    configure(tracking_uri=mlflow_server.url)
    try:
        run_id = log_model(LogisticRegression(max_iter=500).fit(x, y))
        version = register(run_id, model_name)
        ev = Evidence.from_dict(bundle(model_name, version, run_id))
        digest = evidence.record(ev)
        loaded = evidence.load(model_name, version)
    finally:
        configure()  # back to the session's SQLite store

    assert loaded == ev
    assert loaded.digest == digest


def test_importing_evaluation_and_evidence_loads_no_heavy_tool() -> None:
    import subprocess
    import sys

    code = (
        "import sys, mlops.evaluation, mlops.evidence, mlops._render\n"
        "heavy = {'mlflow', 'dvc', 'great_expectations', 'bentoml', 'sklearn', 'pandas'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
