"""Packaging with real BentoML: import, ``bentoml build``, a served Bento, parity.

Builds cost seconds each, so one Bento is built per module (``packaged``) and shared by
every test that can serve it; the tests of what ``package`` itself does with a sample the
pyfunc cannot predict, a skipped or a failing smoke test, and models of their own build
their own through the public ``package`` call.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops import packaging
from mlops.errors import ModelVersionNotFound, PackagingError
from mlops.packaging import PackageReport, Parity, SmokeResult
from tests.conftest import SKLEARN_REQUIREMENTS

pytestmark = pytest.mark.slow

EVIDENCE = "e" * 64
PYFUNC_REQUIREMENTS = [f"{p}=={importlib.metadata.version(p)}" for p in ("mlflow", "pandas")]


def _register(name: str, *, signature: bool = True, infer: bool = True) -> tuple[int, Any]:
    """Log an iris LogisticRegression and register it as ``name``; return (version, X).

    ``infer=False`` declares the requirements instead of letting MLflow infer them (which
    loads the model in a fresh interpreter) for a model whose requirements no test reads.
    """
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlops import registry, tracking

    features, target = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(features, target)
    extra: dict[str, Any] = {} if infer else {"pip_requirements": SKLEARN_REQUIREMENTS}
    if signature:
        extra["signature"] = infer_signature(features, model.predict(features))
        extra["input_example"] = features.head(3)
    with tracking.start_run("iris"):
        info = mlflow.sklearn.log_model(model, name="model", **extra)
    return registry.register(info.model_uri, name).version, features


@pytest.fixture(scope="module")
def iris(mlflow_home: Path) -> tuple[str, int, Any]:
    name = f"iris-{uuid.uuid4().hex[:8]}"
    version, features = _register(name)
    return name, version, features


@pytest.fixture(scope="module")
def packaged(iris: tuple[str, int, Any]) -> tuple[PackageReport, float]:
    name, version, features = iris
    started = time.monotonic()
    report = packaging.package(
        name,
        version,
        sample=features.sample(25, random_state=1),
        labels={"mlops.evidence": EVIDENCE},
    )
    return report, time.monotonic() - started


def _pyfunc(name: str, version: int, frame: Any) -> list[Any]:
    import mlflow

    from mlops import registry

    return (
        mlflow.pyfunc.load_model(registry.get(name, version).download_uri).predict(frame).tolist()
    )


def test_package_builds_a_bento_whose_smoke_test_passes(packaged, iris) -> None:
    report, seconds = packaged
    name = iris[0]
    print(f"package (import + build + smoke): {seconds:.1f}s, smoke {report.smoke.seconds}s")
    assert report.passed, str(report)
    assert report.smoke == SmokeResult(
        passed=True, rows=25, mismatches=0, error=None, seconds=report.smoke.seconds
    )
    assert report.bento_tag.startswith(f"{name}:")
    assert report.model_tag.startswith(f"{name}:")
    assert report.parity == Parity()
    body = report.to_dict()
    assert json.loads(json.dumps(body)) == body
    assert set(body) == {"bento_tag", "model_tag", "smoke", "parity", "passed", "bento_digest"}
    # the digest taken at build time still holds after the smoke test served the Bento
    assert body["bento_digest"] == packaging.bento_digest(report.bento_tag)
    assert set(body["smoke"]) == {"passed", "rows", "mismatches", "error", "seconds"}
    assert body["parity"] == {"passed": True, "missing": [], "mismatched": []}
    assert f"Bento {report.bento_tag}" in str(report) and "PASS" in str(report)
    assert report.bento_tag in report._repr_html_() and "<table>" in report._repr_html_()


def test_build_returns_a_plain_tag_where_colour_is_forced(packaged, iris, monkeypatch) -> None:
    """A notebook kernel sets FORCE_COLOR and CLICOLOR_FORCE (ipykernel does, for every
    cell); BentoML's console then highlighted a version such as ``v3-793e5278`` as a
    number, and the tag read back held terminal escapes that named no Bento."""
    import secrets

    report, _seconds = packaged
    for var in ("FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setattr(secrets, "token_hex", lambda _n: "793e5278")  # reads as 7.93e5280
    tag = packaging.build(report.model_tag)
    name, version, _features = iris
    assert tag == f"{name}:v{version}-793e5278"
    assert len(packaging.bento_digest(tag)) == 64


def test_labels_are_stamped_on_the_model_and_the_bento(packaged, iris) -> None:
    import bentoml

    report, _ = packaged
    name, version, _features = iris
    expected = {"mlops.model": name, "mlops.version": str(version), "mlops.evidence": EVIDENCE}
    assert bentoml.models.get(report.model_tag).info.labels == expected
    assert bentoml.bentos.get(report.bento_tag).info.labels == expected


def test_bento_carries_the_model_requirements_but_not_the_dev_tools(packaged) -> None:
    report, _ = packaged
    model_reqs = packaging.model_requirements(report.model_tag)
    bento_reqs = packaging.bento_requirements(report.bento_tag)
    assert any(line.startswith("scikit-learn==") for line in model_reqs)
    # MLflow's inference picked the test runner up from the logging process
    assert {"pytest", "rich"} <= {line.split("==")[0] for line in model_reqs}
    assert set(packaging.runtime_requirements(model_reqs)) <= set(bento_reqs)
    names = {line.split("==")[0] for line in bento_reqs}
    assert not names & packaging.DEV_TOOLS, names & packaging.DEV_TOOLS
    assert any(line.startswith("bentoml==") for line in bento_reqs)


def test_bento_version_names_the_model_version(packaged, iris) -> None:
    report, _ = packaged
    assert report.bento_tag.split(":")[1].startswith(f"v{iris[1]}-")


def test_the_smoke_test_serves_on_the_port_it_is_given(packaged, iris) -> None:
    import socket

    report, _ = packaged
    name, version, features = iris
    sample = features.head(3)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = packaging.smoke_test(
            report.bento_tag, sample, expected=_pyfunc(name, version, sample), port=port
        )
    assert not result.passed
    assert "exited" in result.error and ("in use" in result.error or str(port) in result.error)


def test_a_starting_bento_is_waited_for_and_stopped_with_its_block(packaged) -> None:
    """``starting`` hands back the server before it is ready (package() predicts with the
    pyfunc meanwhile); ``wait_ready`` returns once it answers; the block's end stops it."""
    import httpx

    from mlops.packaging._bento_runtime import starting

    report, _ = packaged
    with starting(report.bento_tag) as server:
        with pytest.raises(httpx.HTTPError):  # BentoML takes seconds to load
            httpx.get(f"{server.url}/readyz", timeout=0.5).raise_for_status()
        assert server.proc.poll() is None
        url = server.wait_ready(timeout=120)
        assert httpx.get(f"{url}/readyz").status_code == 200
    assert server.proc.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/readyz")


def test_served_bento_predicts_like_the_mlflow_pyfunc(packaged, iris) -> None:
    report, _ = packaged
    name, version, features = iris
    rows = features.iloc[[0, 60, 120, 149]]
    records = json.loads(rows.to_json(orient="records"))
    with packaging.serve(report.bento_tag) as url:
        answer = httpx.post(f"{url}/predict", json={"data": records}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json() == _pyfunc(name, version, rows) == [0, 1, 2, 2]
        rejected = httpx.post(f"{url}/predict", json={"data": [{"petal width (cm)": 1.0}]})
        assert rejected.status_code == 400
        assert "sepal length (cm)" in rejected.text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/readyz", timeout=2)


def test_smoke_fails_as_data_when_the_sample_breaks_the_served_contract(packaged, iris) -> None:
    report, _ = packaged
    name, version, features = iris
    # MLflow's pyfunc ignores an unknown column; the served contract rejects it.
    sample = features.head(5).assign(customer_id=7.0)
    expected = _pyfunc(name, version, sample)

    smoke = packaging.smoke_test(report.bento_tag, sample, expected=expected)

    failed = PackageReport(report.bento_tag, report.model_tag, smoke, report.parity)
    assert failed.passed is False
    assert smoke.passed is False
    assert smoke.rows == 5
    assert "POST /predict answered 400" in smoke.error
    assert "customer_id" in smoke.error
    assert failed.parity.passed
    assert "FAIL" in str(failed) and "customer_id" in failed._repr_html_()


def test_smoke_fails_as_data_when_the_pyfunc_cannot_predict_the_sample(iris) -> None:
    name, version, features = iris
    sample = features.head(4).drop(columns=["petal width (cm)"])
    report = packaging.package(name, version, sample=sample, smoke=True)
    assert report.smoke.passed is False
    assert report.smoke.mismatches == 4
    assert "cannot predict the sample" in report.smoke.error
    assert "petal width (cm)" in report.smoke.error


def test_a_skipped_smoke_test_does_not_pass(iris) -> None:
    import bentoml

    name, version, features = iris
    report = packaging.package(name, version, sample=features.head(3), smoke=False)
    assert bentoml.bentos.get(report.bento_tag).info.labels["mlops.model"] == name
    assert report.smoke == SmokeResult(
        passed=False, rows=3, mismatches=0, error="skipped: package(..., smoke=False)", seconds=0.0
    )
    assert report.parity.passed and report.passed is False


def test_parity_lists_an_injected_missing_requirement(packaged) -> None:
    report, _ = packaged
    bento_reqs = packaging.bento_requirements(report.bento_tag)
    # compared as package() compares them: the model's runtime requirements (no dev tools)
    runtime = packaging.runtime_requirements(packaging.model_requirements(report.model_tag))
    model_reqs = [*runtime, "imaginary-package==1.0"]
    parity = packaging.dependency_parity(model_reqs, bento_reqs)
    assert parity.missing == ("imaginary-package==1.0",)
    assert parity.mismatched == ()
    assert parity.passed is False
    failed = PackageReport(report.bento_tag, report.model_tag, report.smoke, parity)
    assert failed.passed is False
    assert failed.to_dict()["parity"]["missing"] == ["imaginary-package==1.0"]
    assert "missing imaginary-package==1.0" in str(failed)


def test_parity_lists_an_incompatible_pin(packaged) -> None:
    report, _ = packaged
    bento_reqs = packaging.bento_requirements(report.bento_tag)
    sklearn_pin = next(r for r in bento_reqs if r.startswith("scikit-learn=="))
    parity = packaging.dependency_parity(["scikit-learn<1.0", "Numpy>=1.20"], bento_reqs)
    assert parity.missing == ()
    assert parity.mismatched == (f"scikit-learn<1.0 (Bento has {sklearn_pin})",)


@pytest.mark.parametrize(
    ("model", "bento", "missing", "mismatched"),
    [
        (["numpy==2.4.6"], ["numpy==2.4.6"], (), ()),
        (["NumPy>=2"], ["numpy==2.4.6"], (), ()),
        (["numpy>=2"], ["numpy==1.26.4"], (), ("numpy>=2 (Bento has numpy==1.26.4)",)),
        (["numpy==2.4.6"], ["numpy"], (), ("numpy==2.4.6 (Bento has numpy)",)),
        (["numpy"], ["numpy==2.4.6"], (), ()),
        (["skops==0.16", "--index-url https://x.invalid"], [], ("skops==0.16",), ()),
        (["pywin32==306; sys_platform == 'win32'"], [], (), ()),
    ],
)
def test_dependency_parity_rules(model, bento, missing, mismatched) -> None:
    parity = packaging.dependency_parity(model, bento)
    assert (parity.missing, parity.mismatched) == (missing, mismatched)


def test_a_model_without_signature_cannot_be_packaged(mlflow_home: Path) -> None:
    name = f"nosig-{uuid.uuid4().hex[:8]}"
    version, features = _register(name, signature=False, infer=False)
    with pytest.raises(PackagingError, match=r"has no MLflow input signature.*"):
        packaging.package(name, version, sample=features.head(3))


def test_an_unknown_version_is_not_found(iris) -> None:
    name, _version, features = iris
    with pytest.raises(ModelVersionNotFound, match=rf"'{name}' version 999"):
        packaging.package(name, 999, sample=features.head(3))


def test_build_refuses_a_bento_model_that_is_not_an_mlflow_model(mlflow_home: Path) -> None:
    import bentoml
    from sklearn.dummy import DummyClassifier

    tag = bentoml.sklearn.save_model("plain-sklearn", DummyClassifier().fit([[0]], [0])).tag
    with pytest.raises(PackagingError, match=r"'plain-sklearn:\w+' is not an MLflow model"):
        packaging.build(str(tag))


def test_serve_raises_when_the_bento_does_not_exist(mlflow_home: Path) -> None:
    with (
        pytest.raises(PackagingError, match=r"`bentoml serve` exited with \d+ before"),
        packaging.serve("no-such-bento:v1", timeout=60),
    ):
        pass


_CUSTOM_MODEL = '''
import random

import mlflow.pyfunc
import pandas as pd


class Doubler(mlflow.pyfunc.PythonModel):
    """Doubles ``x``; with ``jitter`` it adds noise, so no two runs agree."""

    def __init__(self, jitter: bool = False) -> None:
        self.jitter = jitter

    def predict(self, context, model_input: pd.DataFrame, params=None):
        noise = random.random() if self.jitter else 0.0
        return (model_input["x"] * 2 + noise).tolist()
'''


@pytest.fixture(scope="module")
def custom_models(
    mlflow_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, int]]:
    """Two versions of a pyfunc whose class lives only in a ``code_paths`` module."""
    import importlib.util

    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from mlops import registry, tracking

    module_file = tmp_path_factory.mktemp("code") / f"doubler_{uuid.uuid4().hex[:8]}.py"
    module_file.write_text(_CUSTOM_MODEL)
    spec = importlib.util.spec_from_file_location(module_file.stem, module_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_file.stem] = module
    spec.loader.exec_module(module)
    frame = pd.DataFrame({"x": [1.0, 2.5, -3.0]})
    name = f"doubler-{uuid.uuid4().hex[:8]}"
    versions = {}
    for label, jitter in (("exact", False), ("jitter", True)):
        with tracking.start_run(label):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=module.Doubler(jitter=jitter),
                code_paths=[str(module_file)],
                pip_requirements=PYFUNC_REQUIREMENTS,
                signature=infer_signature(frame, [2.0, 5.0, -6.0]),
                input_example=frame,
            )
        versions[label] = registry.register(info.model_uri, name).version
    return name, versions


def test_code_path_modules_travel_with_the_bento(custom_models) -> None:
    import pandas as pd

    name, versions = custom_models
    sample = pd.DataFrame({"x": [0.5, 4.0]})
    report = packaging.package(name, versions["exact"], sample=sample)
    # The served Bento could only answer like the pyfunc by importing the module from the
    # model's code/ folder: this process found it by path, the server has no such path.
    assert report.passed, str(report)
    assert report.smoke.rows == 2 and report.smoke.mismatches == 0


def test_smoke_fails_when_served_predictions_differ_from_the_pyfunc(custom_models) -> None:
    import pandas as pd

    name, versions = custom_models
    sample = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    report = packaging.package(name, versions["jitter"], sample=sample)
    assert report.smoke.passed is False
    assert report.smoke.mismatches == 3
    assert "3 of 3 served predictions differ from the MLflow pyfunc's" in report.smoke.error
    assert report.passed is False
