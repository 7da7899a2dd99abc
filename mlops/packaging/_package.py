"""Package a registered MLflow model version as a Bento, and prove it serves.

:func:`package` imports the version into the BentoML model store (:func:`import_model`),
builds a Bento around a generated ``@bentoml.service`` whose input follows the MLflow
signature (:func:`build`), serves it for real and compares its answers with the MLflow
pyfunc's (:func:`smoke_test`), and checks that every requirement of the model is in the
Bento with a compatible pin (:func:`dependency_parity`). The Bento answers
``POST /predict`` with ``{"data": [{column: value, ...}, ...]}`` and returns a JSON list
of predictions.

Bentos and models live under ``BENTOML_HOME`` (default: ``<MLOPS_HOME>/bentoml``).

Example:
    >>> import mlops
    >>> report = mlops.package("iris", 3, sample=frame.head(20))        # doctest: +SKIP
    >>> report.passed, report.bento_tag                                   # doctest: +SKIP
    (True, 'iris:...')
    >>> with mlops.packaging.serve(report.bento_tag) as url:              # doctest: +SKIP
    ...     httpx.post(f"{url}/predict", json={"data": rows}).json()
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops._optional import require
from mlops.errors import PackagingError
from mlops.packaging._bento_runtime import (
    _TAIL,
    READY_TIMEOUT,
    Starting,
    _bentoml,
    _tool_env,
    bento_digest,
    serve,
    starting,
)
from mlops.packaging._parity import (
    PackageReport,
    Parity,
    SmokeResult,
    _compare,
    _jsonable,
    _records,
    _requirement_lines,
    _requirement_name,
    dependency_parity,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEV_TOOLS",
    "PackageReport",
    "Parity",
    "SmokeResult",
    "bento_requirements",
    "bento_version",
    "build",
    "dependency_parity",
    "discard",
    "import_model",
    "model_requirements",
    "package",
    "runtime_requirements",
    "serve",
    "smoke_test",
]

_SERVICE_CLASS = "MlflowModelService"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal escapes, should a console add any
_SUPPORTED_TYPES = {"double", "float", "long", "integer", "boolean", "string", "datetime", "binary"}
# What the generated service itself imports, added to the model's own requirements.
_SERVICE_PACKAGES = ("mlflow", "pandas", "numpy", "pydantic")
# Development tools MLflow's requirement inference picks up from the process that logged the
# model (a test runner, a notebook, a terminal UI); a served model never imports them.
DEV_TOOLS = frozenset(
    {
        "pytest", "rich", "ruff", "ipykernel", "ipython", "jupyter", "jupyter-client",
        "jupyter-core", "nbclient", "nbformat", "notebook", "playwright", "schemathesis",
        "import-linter", "typer", "tqdm", "ipywidgets", "debugpy",
    }
)  # fmt: skip


# --- BentoML model store ------------------------------------------------------------------
def _tag_name(name: str) -> str:
    """A valid BentoML tag name for an MLflow model name."""
    cleaned = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-._")[:50].strip("-._")
    return cleaned or "model"


def _download_uri(name: str, version: int) -> str:
    """Where the version's files are (in MLflow 3 ``source`` is a ``models:/m-...`` URI)."""
    from mlops import registry

    return registry.get(name, version).download_uri


def import_model(name: str, version: int, *, labels: Mapping[str, str] | None = None) -> str:
    """Import a registered MLflow model version into the BentoML model store.

    Labels ``mlops.model`` and ``mlops.version`` are stamped; pass the evidence digest as
    ``labels={"mlops.evidence": digest}``. The whole MLflow model directory is copied, so
    its ``requirements.txt`` and ``code/`` (``code_paths``) travel with it.

    Returns:
        The BentoML model tag, e.g. ``"iris:ab12cd34"``.

    Example:
        >>> import_model("iris", 3, labels={"mlops.evidence": digest})   # doctest: +SKIP
        'iris:kq3x7aqd2ce7ph7w'
    """
    uri = _download_uri(name, version)
    bentoml = _bentoml()
    stamped = {**{str(k): str(v) for k, v in (labels or {}).items()}}
    stamped.update({"mlops.model": name, "mlops.version": str(int(version))})
    try:
        model = bentoml.mlflow.import_model(
            _tag_name(name),
            uri,
            labels=stamped,
            metadata={"mlflow_uri": uri, "mlflow_model": name, "mlflow_version": int(version)},
        )
    except (bentoml.exceptions.BentoMLException, OSError) as exc:
        raise PackagingError(
            f"Could not import MLflow model {name!r} version {version} ({uri}) into BentoML: {exc}",
            hint="The version must be an MLflow model with the python_function flavor.",
        ) from exc
    return str(model.tag)


def _stored_model(model_tag: str) -> Any:
    bentoml = _bentoml()
    try:
        return bentoml.models.get(model_tag)
    except bentoml.exceptions.NotFound as exc:
        raise PackagingError(
            f"BentoML model {model_tag!r} is not in the model store: {exc}",
            hint="Import it first with `mlops.packaging.import_model(name, version)`.",
        ) from exc


def _model_dir(model_tag: str) -> Path:
    return Path(_stored_model(model_tag).path_of("mlflow_model"))


def model_requirements(model_tag: str) -> list[str]:
    """The MLflow model's ``requirements.txt`` lines (no comments or blank lines).

    Example:
        >>> model_requirements("iris:kq3x7aqd2ce7ph7w")                  # doctest: +SKIP
        ['mlflow==3.17.2', 'numpy==2.4.6', ...]
    """
    path = _model_dir(model_tag) / "requirements.txt"
    if not path.is_file():
        return []
    return _requirement_lines(path.read_text())


def runtime_requirements(requirements: Sequence[str]) -> list[str]:
    """``requirements`` without the development tools in :data:`DEV_TOOLS`.

    Example:
        >>> runtime_requirements(["scikit-learn==1.9.1", "pytest==9.2.0", "rich==15.0.0"])
        ['scikit-learn==1.9.1']
    """
    return [line for line in requirements if _requirement_name(line) not in DEV_TOOLS]


# --- the generated service and the build --------------------------------------------------
def _columns(model_dir: Path, model_tag: str) -> list[dict[str, Any]]:
    """Columns and types from the MLflow signature, as the generated service reads them."""
    mlflow = require("mlflow")
    try:
        signature = mlflow.models.get_model_info(str(model_dir)).signature
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise PackagingError(
            f"BentoML model {model_tag!r} is not an MLflow model ({model_dir}): {exc}",
            hint="Import it with `mlops.packaging.import_model(name, version)`.",
        ) from exc
    if signature is None or signature.inputs is None:
        raise PackagingError(
            f"BentoML model {model_tag!r} has no MLflow input signature, so its request "
            "schema is unknown.",
            hint="Log the model with `signature=mlflow.models.infer_signature(X, y)`.",
        )
    columns = []
    for spec in signature.inputs.inputs:
        kind = getattr(getattr(spec, "type", None), "name", None)
        if not spec.name or kind not in _SUPPORTED_TYPES:
            raise PackagingError(
                f"BentoML model {model_tag!r} has an input {spec!r} that is not a named "
                f"column of a supported type ({', '.join(sorted(_SUPPORTED_TYPES))}).",
                hint="Package models with a column-based (DataFrame) signature.",
            )
        columns.append({"name": spec.name, "type": kind, "required": bool(spec.required)})
    return columns


def bento_version(labels: Mapping[str, str]) -> str | None:
    """A Bento version that names the model version, e.g. ``v3-5k2mqx4d``.

    ``bentoml list`` then shows which registered version each Bento serves.

    Example:
        >>> bento_version({"mlops.version": "3"})[:3], bento_version({})
        ('v3-', None)
    """
    import secrets

    number = labels.get("mlops.version")
    return f"v{number}-{secrets.token_hex(4)}" if number else None


def _write_build_context(ctx: Path, model_tag: str, labels: dict[str, str]) -> None:
    model_dir = _model_dir(model_tag)
    spec = {
        "service_name": _tag_name(model_tag.split(":")[0]).replace(".", "_"),
        "model_tag": model_tag,
        "labels": labels,
        "columns": _columns(model_dir, model_tag),
    }
    template = resources.files("mlops.packaging").joinpath("_bento_service.py.tmpl").read_text()
    (ctx / "service.py").write_text(template)
    (ctx / "mlops_service.json").write_text(json.dumps(spec, indent=2))
    requirements = runtime_requirements(model_requirements(model_tag))
    present = {_requirement_name(line) for line in requirements}
    extra = [_installed_pin(p) for p in _SERVICE_PACKAGES if p not in present]
    (ctx / "requirements.txt").write_text("\n".join([*requirements, *extra]) + "\n")
    bentofile = {
        "service": f"service:{_SERVICE_CLASS}",
        "name": spec["service_name"],
        "labels": labels,
        "include": ["service.py", "mlops_service.json"],
        "python": {"requirements_txt": "requirements.txt", "lock_packages": False},
        "models": [model_tag],
    }
    (ctx / "bentofile.yaml").write_text(json.dumps(bentofile, indent=2))


def _installed_pin(package: str) -> str:
    from importlib.metadata import version

    return f"{package}=={version(package)}"


def build(model_tag: str, *, labels: Mapping[str, str] | None = None) -> str:
    """Build a Bento serving the BentoML model ``model_tag``; return the Bento tag.

    The service is generated from the MLflow signature; packages are the model's
    ``requirements.txt`` (not locked, nothing but pip registries is contacted later).
    The Bento carries the model's labels plus ``labels``.

    Raises:
        PackagingError: the build failed (the message ends with the tool's output).

    Example:
        >>> build("iris:kq3x7aqd2ce7ph7w")                                # doctest: +SKIP
        'iris:vdx2w3qd3kq5ph7w'
    """
    stored = _stored_model(model_tag)
    stamped = {k: v for k, v in stored.info.labels.items() if k.startswith("mlops.")}
    stamped.update({str(k): str(v) for k, v in (labels or {}).items()})
    ctx = Path(tempfile.mkdtemp(prefix="mlops-bento-"))
    try:
        _write_build_context(ctx, str(stored.tag), stamped)
        cmd = [sys.executable, "-m", "bentoml", "build", str(ctx)]
        cmd += ["-f", str(ctx / "bentofile.yaml"), "--output", "tag"]
        version = bento_version(stamped)
        cmd += ["--version", version] if version else []
        res = subprocess.run(
            cmd, cwd=ctx, env=_tool_env(), capture_output=True, text=True, check=False
        )
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    found = re.search(r"__tag__:(\S+)", _ANSI.sub("", res.stdout))
    if res.returncode != 0 or not found:
        tail = (res.stdout + res.stderr)[-_TAIL:]
        raise PackagingError(
            f"`bentoml build` for model {model_tag!r} failed (exit {res.returncode}):\n{tail}",
        )
    return found.group(1)


def bento_requirements(bento_tag: str) -> list[str]:
    """The Python requirements written into the Bento (``env/python/requirements.txt``).

    Example:
        >>> bento_requirements("iris:vdx2w3qd3kq5ph7w")[:1]              # doctest: +SKIP
        ['mlflow==3.17.2']
    """
    bentoml = _bentoml()
    try:
        bento = bentoml.bentos.get(bento_tag)
    except bentoml.exceptions.NotFound as exc:
        raise PackagingError(f"Bento {bento_tag!r} is not in the Bento store: {exc}") from exc
    path = Path(bento.path) / "env" / "python" / "requirements.txt"
    return _requirement_lines(path.read_text()) if path.is_file() else []


# --- the smoke test -----------------------------------------------------------------------
def _post(url: str, sample: pd.DataFrame) -> Any:
    httpx = require("httpx")
    try:
        response = httpx.post(f"{url}/predict", json={"data": _records(sample)}, timeout=60.0)
    except httpx.HTTPError as exc:
        raise PackagingError(f"POST {url}/predict failed: {exc!r}") from exc
    if not response.is_success:
        raise PackagingError(
            f"POST /predict answered {response.status_code}: {response.text[:_TAIL]}",
        )
    return response.json()


def smoke_test(
    bento_tag: str,
    sample: pd.DataFrame,
    *,
    expected: Sequence[Any],
    timeout: float = READY_TIMEOUT,
    port: int | None = None,
) -> SmokeResult:
    """Serve the Bento (on ``port``, default a free one), POST ``sample``, compare.

    A failure (server not starting, a rejected request, differing predictions) is
    returned as ``passed=False`` with the reason in ``error``, never raised.

    Example:
        >>> smoke_test(tag, frame, expected=pyfunc.predict(frame)).passed  # doctest: +SKIP
        True
    """
    with starting(bento_tag, port=port) as server:
        return _smoke(server, sample, _jsonable(expected), timeout, time.monotonic())


def _smoke(
    server: Starting, sample: pd.DataFrame, want: list[Any], timeout: float, started: float
) -> SmokeResult:
    """Wait for ``server``, POST ``sample`` and compare with ``want``; never raises."""
    mismatches, error = len(sample), None
    try:
        url = server.wait_ready(timeout)
        mismatches, error = _compare(_post(url, sample), want)
    except PackagingError as exc:
        error = exc.message
    return SmokeResult(
        passed=error is None,
        rows=len(sample),
        mismatches=mismatches,
        error=error,
        seconds=round(time.monotonic() - started, 3),
    )


def _pyfunc_predictions(name: str, version: int, sample: pd.DataFrame) -> list[Any]:
    """The MLflow pyfunc's predictions on ``sample``: what the Bento must answer."""
    mlflow = require("mlflow")
    uri = _download_uri(name, version)
    try:
        return _jsonable(mlflow.pyfunc.load_model(uri).predict(sample))
    except (mlflow.exceptions.MlflowException, ValueError, TypeError, KeyError) as exc:
        raise PackagingError(
            f"The MLflow pyfunc of {name!r} version {version} cannot predict the sample: {exc}",
            hint="Pass a sample with the columns and types of the model signature.",
        ) from exc


# --- the one call -------------------------------------------------------------------------
def package(
    name: str,
    version: int,
    *,
    sample: pd.DataFrame,
    labels: Mapping[str, str] | None = None,
    smoke: bool = True,
    port: int | None = None,
) -> PackageReport:
    """Import, build, smoke-test and check the dependencies of one model version.

    ``sample`` is posted to the served Bento and its predictions must equal the MLflow
    pyfunc's on the same rows. Pass the evidence digest as ``labels={"mlops.evidence": d}``.
    The smoke test serves on ``port`` (default: a free one). The Bento's requirements are
    the model's without development tools (:func:`runtime_requirements`).

    Raises:
        PackagingError: the import or the build failed. A failing smoke test is not
            raised: it is ``report.smoke.passed == False`` with the reason.

    Example:
        >>> report = package("iris", 3, sample=frame.head(20))           # doctest: +SKIP
        >>> print(report)                                                 # doctest: +SKIP
        Bento iris:vdx2w3qd3kq5ph7w (model iris:kq3x7aqd2ce7ph7w): PASS
    """
    model_tag = import_model(name, version, labels=labels)
    bento_tag = build(model_tag)
    digest = bento_digest(bento_tag)  # before serving: what was built is what is signed
    parity = dependency_parity(
        runtime_requirements(model_requirements(model_tag)), bento_requirements(bento_tag)
    )
    if not smoke:
        result = SmokeResult(False, len(sample), 0, "skipped: package(..., smoke=False)", 0.0)
        return PackageReport(bento_tag, model_tag, result, parity, digest)
    # The Bento loads while the pyfunc predicts the sample in this process.
    with starting(bento_tag, port=port) as server:
        started = time.monotonic()
        try:
            expected = _pyfunc_predictions(name, version, sample)
        except PackagingError as exc:
            result = SmokeResult(False, len(sample), len(sample), exc.message, 0.0)
        else:
            result = _smoke(server, sample, expected, READY_TIMEOUT, started)
    return PackageReport(bento_tag, model_tag, result, parity, digest)


def discard(bento_tag: str) -> bool:
    """Delete a Bento from the store (a blocked version's); ``False`` if it was not there.

    Example:
        >>> discard("iris-classifier:v3-5k2mqx4d")                       # doctest: +SKIP
        True
    """
    bentoml = _bentoml()
    try:
        bentoml.bentos.delete(bento_tag)
    except bentoml.exceptions.NotFound:
        return False
    return True
