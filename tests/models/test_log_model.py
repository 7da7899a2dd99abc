"""``mlops.log_model`` over a zoo of scikit-learn models, and ``register`` refusing a
logged model whose logging failed (issue: a random forest failed at the README's line)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mlops
from mlops.errors import ModelNotReady, TrackingError, UntrustedModelType
from mlops.models import untrusted_types


def _wine() -> tuple[Any, Any]:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    return frame.drop(columns=["target"]), frame["target"]


def _mixed() -> tuple[Any, Any]:
    """Wine with a text column (alcohol binned) in place of a number: mixed types."""
    x, y = _wine()
    x = x.copy()
    x["strength"] = ["low" if a < 12.5 else "mid" if a < 13.5 else "high" for a in x["alcohol"]]
    return x.drop(columns=["alcohol"]), y


def _diabetes() -> tuple[Any, Any]:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    return frame.drop(columns=["target"]), frame["target"]


def _column_pipeline() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x, _ = _mixed()
    numeric = [c for c in x.columns if c != "strength"]
    prep = ColumnTransformer(
        [
            ("text", OneHotEncoder(handle_unknown="ignore"), ["strength"]),
            ("numbers", StandardScaler(), numeric),
        ]
    )
    return Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=2000))])


def _zoo() -> dict[str, tuple[Callable[[], Any], Callable[[], tuple[Any, Any]], str]]:
    from sklearn import ensemble, linear_model, neighbors, pipeline, preprocessing, svm

    scaled_svc = pipeline.make_pipeline(
        preprocessing.StandardScaler(), svm.SVC(probability=True, random_state=0)
    )
    return {
        "random_forest": (lambda: ensemble.RandomForestClassifier(20, random_state=0), _wine, "c"),
        "extra_trees": (lambda: ensemble.ExtraTreesClassifier(20, random_state=0), _wine, "c"),
        "gradient_boosting": (
            lambda: ensemble.GradientBoostingClassifier(n_estimators=20, random_state=0),
            _wine,
            "c",
        ),
        "hist_gradient_boosting": (
            lambda: ensemble.HistGradientBoostingClassifier(max_iter=20, random_state=0),
            _wine,
            "c",
        ),
        "svc_proba": (lambda: scaled_svc, _wine, "c"),
        "knn": (lambda: neighbors.KNeighborsClassifier(5), _wine, "c"),
        "column_pipeline": (_column_pipeline, _mixed, "c"),
        "ridge": (lambda: linear_model.Ridge(alpha=1.0), _diabetes, "r"),
        "lasso": (lambda: linear_model.Lasso(alpha=0.1), _diabetes, "r"),
        "random_forest_regressor": (
            lambda: ensemble.RandomForestRegressor(20, random_state=0),
            _diabetes,
            "r",
        ),
    }


ZOO = sorted(_zoo())


def log_and_register(model: Any, x: Any, name: str, **options: Any) -> mlops.registry.ModelVersion:
    with mlops.start_run(f"zoo-{name}") as run:
        mlops.log_model(model, name="model", input_example=x.head(3), **options)
    return mlops.register(run, name)


@pytest.fixture(scope="module")
def zoo(mlflow_home: Path) -> dict[str, tuple[Any, Any, Any, mlops.registry.ModelVersion]]:
    """Every zoo member fitted, logged with ``mlops.log_model`` and registered."""
    import uuid

    out = {}
    for key, (make, data, _task) in _zoo().items():
        x, y = data()
        model = make().fit(x, y)
        mv = log_and_register(model, x, f"zoo-{key}-{uuid.uuid4().hex[:6]}")
        out[key] = (model, x, y, mv)
    return out


@pytest.mark.parametrize("key", ZOO)
def test_zoo_member_logs_registers_and_loads_back(zoo, key: str):
    """Each member is READY, carries an inferred signature, and predicts as the original
    after a load through MLflow's pyfunc (skops with the trusted types recorded)."""
    from mlflow.models import get_model_info

    model, x, _y, mv = zoo[key]
    info = get_model_info(mv.uri)
    assert [c.name for c in info.signature.inputs.inputs] == list(x.columns)
    assert info.flavors["sklearn"]["serialization_format"] == "skops"
    loaded = mlops.registry.load_model(mv.name, mv.version)
    got = loaded.predict(x.head(20))
    assert list(got) == pytest.approx(list(model.predict(x.head(20))))


@pytest.mark.parametrize("key", ZOO)
def test_zoo_member_requirements_are_what_loading_it_needs_pinned(zoo, key: str):
    """The requirements are read from the model's types: what loading it needs, each at the
    installed version, and not whatever the logging process had imported (MLflow's
    inference by subprocess listed the test runner and rich)."""
    from importlib.metadata import version

    from mlflow.artifacts import download_artifacts

    _model, _x, _y, mv = zoo[key]
    folder = Path(download_artifacts(artifact_uri=mv.source))
    lines = (folder / "requirements.txt").read_text().split()
    pins = dict(line.split("==") for line in lines)
    assert set(pins) == {"mlflow", "numpy", "pandas", "scikit-learn", "scipy", "skops"}
    assert all(pins[name] == version(name) for name in pins)


def test_requirements_name_the_package_of_a_trusted_foreign_function(mlflow_home: Path):
    """A foreign function the model holds brings its own package, pinned."""
    from importlib.metadata import version

    import joblib
    from mlflow.artifacts import download_artifacts
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    func = joblib.cpu_count  # any function of a package outside the loader's own
    model = make_pipeline(FunctionTransformer(func), Ridge())
    with mlops.start_run("foreign-requirement"):
        info = mlops.log_model(model, name="model", trusted=[f"{func.__module__}.cpu_count"])
    lines = (Path(download_artifacts(info.model_uri)) / "requirements.txt").read_text().split()
    assert f"joblib=={version('joblib')}" in lines


def test_untrusted_types_splits_owned_from_foreign():
    from sklearn.ensemble import RandomForestClassifier

    x, y = _wine()
    owned, foreign = untrusted_types(RandomForestClassifier(3, random_state=0).fit(x, y))
    assert (owned, foreign) == (["sklearn.tree._tree.Tree"], [])


def test_a_foreign_type_is_refused_naming_it_and_trusted_when_named(mlflow_home: Path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from tests.models._foreign import double

    x, y = _wine()
    model = make_pipeline(FunctionTransformer(double), LogisticRegression(max_iter=3000)).fit(x, y)
    with mlops.start_run("foreign") as run:
        with pytest.raises(
            UntrustedModelType,
            match=r"type\(s\) 'tests\.models\._foreign\.double' that are not owned by "
            r"scikit-learn, NumPy or SciPy.*trusted=\['tests\.models\._foreign\.double'\]",
        ):
            mlops.log_model(model, name="model", input_example=x.head(2))
        info = mlops.log_model(
            model, name="model", input_example=x.head(2), trusted=["tests.models._foreign.double"]
        )
    assert str(mlops.registry._client().get_logged_model(info.model_id).status) == "READY"
    assert run.run_id == info.run_id


def test_log_model_needs_an_active_run():
    from sklearn.linear_model import Ridge

    x, y = _diabetes()
    with pytest.raises(TrackingError, match=r"log_model\(Ridge, name='model'\) needs an active"):
        mlops.log_model(Ridge().fit(x, y), name="model")


def test_register_refuses_a_failed_logged_model(mlflow_home: Path, model_name: str):
    """The README's old line, ``mlflow.sklearn.log_model`` on a random forest, fails in
    MLflow 3 (skops refuses the tree type) and leaves a FAILED logged model; registering
    it used to give a READY version with no files."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from sklearn.ensemble import RandomForestClassifier

    x, y = _wine()
    with pytest.raises(MlflowException, match=r"untrusted types"), mlops.start_run("fails") as run:
        mlflow.sklearn.log_model(RandomForestClassifier(3).fit(x, y), name="model")
    with pytest.raises(
        ModelNotReady, match=rf"of run {run.run_id} is FAILED, not READY \(the run is FAILED\)"
    ) as err:
        mlops.register(run, model_name)
    assert err.value.code == "model_not_ready"
    assert "mlops.log_model" in err.value.hint
    client = mlops.registry._client()
    assert client.search_model_versions(f"name = '{model_name}'") == []


# --- the zoo through promote(): build, serve and smoke-test each Bento ------------------------
def _policy(task: str) -> dict[str, Any]:
    metrics = {"accuracy": {"threshold": 0.7}} if task == "c" else {"rmse": {"threshold": 80}}
    return {"targets": {"zoo": {"checks": {"metrics": metrics, "smoke_test": True}}}}


@pytest.mark.parametrize("key", ZOO)
def test_zoo_member_goes_through_promote_with_a_served_smoke_test(zoo, key: str):
    """A Bento is built and served for each member; its answers on the sample equal the
    MLflow pyfunc's (which equal the model's: test_zoo_member_logs_registers_and_loads_back)
    and the Bento carries every requirement of the model."""
    _model, x, y, mv = zoo[key]
    task = _zoo()[key][2]
    frame = x.assign(target=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        handle = mlops.promote(
            mv.name,
            mv.version,
            to="zoo",
            data=frame,
            eval_data=frame,
            target="target",
            policy=_policy(task),
            submit=False,
        )
    assert handle.verdict.passed, str(handle.verdict)
    assert {r.rule: r.passed for r in handle.verdict.rules}["checks.smoke_test"] is True
    package = handle.evidence.package
    smoke = package["smoke"]
    assert (smoke["passed"], smoke["rows"], smoke["mismatches"], smoke["error"]) == (
        True,
        5,
        0,
        None,
    )
    assert package["parity"]["passed"] is True, package["parity"]


# --- boosters through their own MLflow flavors (the optional extra) -----------------------------
@pytest.mark.parametrize(
    ("package", "make", "flavor"),
    [
        ("lightgbm", "LGBMClassifier", "lightgbm"),
        ("xgboost", "XGBClassifier", "xgboost"),
    ],
)
def test_boosters_log_through_their_own_flavor(
    mlflow_home: Path, model_name: str, package: str, make: str, flavor: str
):
    module = pytest.importorskip(package, reason=f"{package} is not installed (mlops[boosters])")
    x, y = _wine()
    model = getattr(module, make)(n_estimators=10).fit(x, y)
    mv = log_and_register(model, x, model_name)
    from mlflow.models import get_model_info

    assert flavor in get_model_info(mv.uri).flavors
    got = mlops.registry.load_model(mv.name, mv.version).predict(x.head(10))
    assert list(got) == list(model.predict(x.head(10)))
