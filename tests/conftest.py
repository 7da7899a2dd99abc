"""Shared fixtures: real tools in temporary places.

- ``mlflow_home``: one MLflow SQLite store for the whole session (creating a store runs
  MLflow's migrations, which takes seconds); tests isolate themselves by model name
  (``model_name``).
- ``dvc_repo``: a fresh git + DVC repository with a local DVC remote, as the cwd.
- ``mlflow_server``: a real ``mlflow server`` process on a free loopback port.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops import _procs

BIN = Path(sys.executable).parent

# What a test's sklearn model declares it needs. Without it MLflow infers the list by
# loading the model in a fresh interpreter: seconds per logged model, for a list no test
# but the packaging ones reads (they keep MLflow's inference).
SKLEARN_REQUIREMENTS = [f"scikit-learn=={importlib.metadata.version('scikit-learn')}"]

# Keep the wrapped tools quiet and local for every test.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("GIT_AUTHOR_NAME", "mlops tests")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@example.invalid")
os.environ.setdefault("GIT_COMMITTER_NAME", "mlops tests")
os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@example.invalid")
# The registry server encrypts webhook secrets with this key; on PostgreSQL it refuses to
# start without one (tests of the key handling itself unset it).
TEST_SECRET_KEY = "tgSzpbA2J507kGjLOwvHA8CBI3_FyXI66yq_rlUh0zE="
os.environ.setdefault("MLOPS_REGISTRY_SECRET_KEY", TEST_SECRET_KEY)
# The key the server signs decisions and audit checkpoints with; on PostgreSQL it refuses
# to start without one. Verifiers need only its public half (TEST_SIGNING_KEY's).
TEST_SIGNING_KEY = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIG8ajz6PhPu5FffjtRIEyjzUhpS9z06RfzGSM9Tl+fzu\n"
    "-----END PRIVATE KEY-----\n"
)
os.environ.setdefault("MLOPS_REGISTRY_SIGNING_KEY", TEST_SIGNING_KEY)


# Under pytest-xdist each worker takes its servers' ports from its own block below the
# kernel's ephemeral range (32768-60999 on Linux): two workers never pick the same port
# between "free" and "listening", and a port the kernel hands out (``bind(0)``, e.g. a Bento
# the library serves) never lands on one a test chose. Run alone, the kernel picks.
_PORT_BLOCK, _PORT_BASE = 1000, 20000


def _worker_ports() -> Iterator[int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    start = _PORT_BASE + _PORT_BLOCK * int(worker.removeprefix("gw"))
    return itertools.cycle(range(start, start + _PORT_BLOCK))


_ports: Iterator[int] | None = None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (this worker's own)."""
    global _ports
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _procs.free_port()
    if _ports is None:
        _ports = _worker_ports()
    for _ in range(_PORT_BLOCK):
        port = next(_ports)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # taken, or still in TIME_WAIT: the next one
                continue
        return port
    raise RuntimeError(f"no free port left in this worker's block of {_PORT_BLOCK}")


def wait_for_http(url: str, *, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 2xx, the process dies, or ``timeout`` passes."""
    import httpx

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2.0).is_success:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def run(cmd: list[str] | str, cwd: Path | None = None, **kw) -> str:
    """Run a command, fail loudly with its output, return stdout."""
    res = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, shell=isinstance(cmd, str), **kw
    )
    if res.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res.stdout


def use_experiment(tracking_uri: str, name: str) -> None:
    """Make ``name`` MLflow's active experiment, keeping a SQLite store's artifacts beside
    its database (MLflow's default would be ./mlruns under the cwd, i.e. the checkout)."""
    import mlflow

    if mlflow.get_experiment_by_name(name) is None and tracking_uri.startswith("sqlite:///"):
        store = Path(tracking_uri.removeprefix("sqlite:///")).parent
        mlflow.create_experiment(name, artifact_location=(store / name).as_uri())
    mlflow.set_experiment(name)


@pytest.fixture(scope="session")
def mlflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One MLflow SQLite store and artifact root for the session; sets MLOPS_* env."""
    home = tmp_path_factory.mktemp("mlops-home")
    old = {k: os.environ.get(k) for k in ("MLOPS_HOME", "MLOPS_TRACKING_URI", "BENTOML_HOME")}
    os.environ["MLOPS_HOME"] = str(home)
    os.environ["MLOPS_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ["BENTOML_HOME"] = str(home / "bentoml")
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def model_name() -> str:
    """A registered-model name no other test uses."""
    return f"model-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class DvcRepo:
    root: Path
    remote: Path

    def git(self, *args: str) -> str:
        return run(["git", *args], cwd=self.root).strip()

    def dvc(self, *args: str) -> str:
        return run([str(BIN / "dvc"), *args], cwd=self.root).strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


_REMOTE_PLACEHOLDER = "/the-dvc-remote-of-this-repository"


@pytest.fixture(scope="session")
def _initialised_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``git init`` + ``dvc init`` + analytics off + a default remote, done once: each DVC
    command starts a Python interpreter, so ``new_dvc_repo`` copies this instead."""
    root = tmp_path_factory.mktemp("dvc-template") / "repo"
    root.mkdir()
    template = DvcRepo(root=root, remote=Path(_REMOTE_PLACEHOLDER))
    template.git("init", "-q", "-b", "main")
    template.dvc("init", "-q")
    template.dvc("config", "core.analytics", "false")
    template.dvc("remote", "add", "-d", "local", _REMOTE_PLACEHOLDER)
    return root


def new_dvc_repo(template: Path, root: Path, remote: Path) -> DvcRepo:
    """A git + DVC repository at ``root`` with the local remote ``remote``, its DVC setup
    committed ("init dvc"): a copy of ``template`` pointed at ``remote``."""
    shutil.copytree(template, root, ignore=shutil.ignore_patterns("tmp"))
    remote.mkdir(parents=True)
    config = root / ".dvc" / "config"
    config.write_text(config.read_text().replace(_REMOTE_PLACEHOLDER, str(remote)))
    repo = DvcRepo(root=root, remote=remote)
    repo.commit("init dvc")
    return repo


@pytest.fixture
def dvc_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _initialised_repo: Path) -> DvcRepo:
    """A fresh git + DVC repository with a local remote, made the cwd."""
    repo = new_dvc_repo(_initialised_repo, tmp_path / "repo", tmp_path / "dvc-remote")
    monkeypatch.chdir(repo.root)
    monkeypatch.setenv("MLOPS_DVC_ROOT", str(repo.root))
    return repo


@dataclass(frozen=True)
class MlflowServer:
    url: str
    proc: subprocess.Popen
    backend: Path
    log: Path  # its output, one access-log line per request answered (mlflow_requests)


def mlflow_requests(log: Path) -> Counter:
    """The HTTP requests the ``mlflow server`` writing ``log`` has answered so far, by path
    after ``/api/<version>/mlflow/`` (or ``mlflow-artifacts/``), from its access log."""
    time.sleep(0.5)  # the server writes the line as it answers
    seen: Counter = Counter()
    with log.open(errors="replace") as lines:
        for line in lines:
            found = re.search(r'"[A-Z]+ /api/[\d.]+/mlflow[^/]*/([^ ?]+)[^"]* HTTP/1.1"', line)
            if found:
                seen[found.group(1)] += 1
    return seen


def start_mlflow_server(
    workdir: Path,
    *,
    port: int | None = None,
    backend_store_uri: str | None = None,
    artifacts_destination: str | None = None,
    env: Mapping[str, str] | None = None,
    workers: int = 1,
) -> MlflowServer:
    """Start a real ``mlflow server`` on loopback (SQLite + local artifacts in ``workdir``).

    ``backend_store_uri`` (e.g. a PostgreSQL URL) and ``artifacts_destination`` (e.g.
    ``s3://bucket/mlflow``, reached with ``MLFLOW_S3_ENDPOINT_URL`` and ``AWS_*`` from
    ``env``) replace the local defaults; clients reach artifacts through the server either
    way. ``workers`` is the number of MLflow's server processes. Restarting on the same
    ``workdir`` and ``port`` reuses the store (an outage test's "MLflow is back"). MLflow's
    background job runner is off: nothing here uses it and it starts a dozen worker
    processes.
    """
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    backend = backend_store_uri or f"sqlite:///{workdir / 'server.db'}"
    env = {**os.environ, **(env or {}), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log_path = workdir / "mlflow-server.log"
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--backend-store-uri",
                backend,
                "--artifacts-destination",
                artifacts_destination or str(workdir / "artifacts"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", timeout=120, proc=proc)
    except Exception:
        stop_process(proc)
        raise RuntimeError(log_path.read_text()[-4000:]) from None
    return MlflowServer(url=url, proc=proc, backend=workdir / "server.db", log=log_path)


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a process group started with ``start_new_session=True``."""
    _procs.stop_group(proc, timeout)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` process for the session, stopped at the end."""
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    stop_process(server.proc)


@contextlib.contextmanager
def fresh_pg_database(prefix: str = "mlops_test") -> Iterator[str]:
    """A new, empty PostgreSQL database at 127.0.0.1:5432 for the block (dropped after)."""
    import psycopg

    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:  # a hard failure, never a skip: CI starts PG
        raise RuntimeError(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}") from exc
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database at 127.0.0.1:5432 for the session (dropped after)."""
    with fresh_pg_database() as url:
        yield url


__all__ = [
    "free_port",
    "fresh_pg_database",
    "mlflow_requests",
    "run",
    "start_mlflow_server",
    "stop_process",
    "wait_for_http",
]


# --- a registered model with DVC lineage -------------------------------------------------
@dataclass(frozen=True)
class LineageModel:
    """A registered model version trained on a DVC-tracked CSV (see ``lineage_model``)."""

    name: str
    version: int
    dataset: object  # mlops.data.DatasetVersion
    run_id: str
    repo: DvcRepo


def write_iris(path: Path) -> None:
    """Write the iris data set (features + integer ``target``) as CSV."""
    from sklearn.datasets import load_iris

    path.parent.mkdir(parents=True, exist_ok=True)
    load_iris(as_frame=True).frame.to_csv(path, index=False)


@pytest.fixture(scope="session")
def lineage_run(
    mlflow_home: Path, tmp_path_factory: pytest.TempPathFactory, _initialised_repo: Path
):
    """Built once per session: a git + DVC repo with iris in ``data/iris.csv`` (added,
    committed, pushed) and one ``mlops.start_run`` that trained a logistic regression on it
    and logged it as ``model``. Returns ``(repo, dataset_version, run_id)``."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    import mlops

    base = tmp_path_factory.mktemp("lineage")
    repo = new_dvc_repo(_initialised_repo, base / "repo", base / "dvc-remote")
    write_iris(repo.root / "data" / "iris.csv")
    repo.dvc("add", "-q", "data/iris.csv")
    repo.commit("track iris")
    repo.dvc("push", "-q")
    ds = mlops.data.version("data/iris.csv", repo=repo.root)
    with mlops.start_run("lineage-model", datasets=[ds]) as run:
        df = mlops.data.read_dataframe(ds)
        x, y = df.drop(columns=["target"]), df["target"]
        clf = LogisticRegression(max_iter=500).fit(x, y)
        mlflow.log_metric("accuracy", float(clf.score(x, y)))
        mlflow.sklearn.log_model(clf, name="model", pip_requirements=SKLEARN_REQUIREMENTS)
    return repo, ds, run.run_id


@pytest.fixture
def lineage_model(lineage_run, model_name: str, monkeypatch: pytest.MonkeyPatch) -> LineageModel:
    """Version 1 of a fresh ``model_name``, registered from the session's ``lineage_run``
    (iris in a DVC repo, logistic regression). The repo is the cwd; do not modify it."""
    import mlops

    repo, ds, run_id = lineage_run
    monkeypatch.chdir(repo.root)
    monkeypatch.setenv("MLOPS_DVC_ROOT", str(repo.root))
    mv = mlops.register(run_id, model_name)
    return LineageModel(name=model_name, version=mv.version, dataset=ds, run_id=run_id, repo=repo)


# --- the order of modules, one test per node id ------------------------------------------
# `make test` hands whole modules to pytest-xdist workers in collection order (the
# Makefile's --dist loadfile --no-loadscope-reorder): the longest go first, so that none of
# them starts last while the other workers sit idle. Then the other modules that start real
# servers or builds (marked ``slow``), then the rest, each in its usual order.
LONGEST_FIRST = (
    "tests/test_pipeline.py",
    "tests/test_quickstart.py",
    "tests/test_topology.py",
    "tests/test_notebooks.py",
    "tests/models/test_log_model.py",
    "tests/server/test_outage.py",
    "tests/test_packaging.py",
)
_ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(tryfirst=True)  # before --deselect and other plugins read the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _give_own_node_ids(items)
    if "PYTEST_XDIST_WORKER" not in os.environ:  # under xdist the controller checks
        _check_one_test_per_node_id([item.nodeid for item in items])

    def module_of(item: pytest.Item) -> str:
        return item.path.relative_to(_ROOT).as_posix() if item.path.is_relative_to(_ROOT) else ""

    # A module ranks as a whole, so it is one place in the queue the workers take from.
    slow = {module_of(i) for i in items if i.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        module = module_of(item)
        if module in LONGEST_FIRST:
            return LONGEST_FIRST.index(module)
        return len(LONGEST_FIRST) + (0 if module in slow else 1)

    items.sort(key=rank)  # stable: a module's tests keep their order


def _give_own_node_ids(items: list[pytest.Item]) -> None:
    """Name each test that shares its node id with another by its own name.

    pytest (9.2) builds a test function's node id from its ``originalname``, and
    schemathesis gives every API operation of ``@schema.parametrize()`` the bare test name
    there: the 34 operations of each test in tests/server/test_openapi_fuzz.py were all
    ``test_with_admin_token``. pytest-xdist hands out tests by node id, so it ran the first
    operation of each and dropped the other 66 without a word. Their names,
    ``test_with_admin_token[GET /healthz]``, are distinct.
    """
    counts = Counter(item.nodeid for item in items)
    for item in items:
        if counts[item.nodeid] > 1 and item.parent is not None:
            item._id = item.parent.id.child(item.name)  # what pytest gives any other item


def _check_one_test_per_node_id(ids: list[str]) -> None:
    shared = sorted(nodeid for nodeid, n in Counter(ids).items() if n > 1)
    if shared:
        raise pytest.UsageError(
            f"{len(shared)} node ids name more than one test, e.g. {shared[:3]}: "
            "pytest-xdist would run one test of each; give the tests their own names"
        )


# Under xdist the controller knows what the workers collected; a run that reports fewer
# tests than that dropped some without a word, and fails here instead of passing. (A set of
# ids counts tests only because each id names one test: checked here first.)
_COLLECTED: set[str] = set()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    _check_one_test_per_node_id(ids)
    _COLLECTED.update(ids)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not _COLLECTED or reporter is None or session.shouldfail or session.shouldstop:
        return
    reported = {
        getattr(rep, "nodeid", None)
        for reports in reporter.stats.values()
        for rep in reports
        if getattr(rep, "when", None) in ("setup", "call", "teardown")
    }
    missing = sorted(_COLLECTED - reported)
    if missing:
        reporter.write_line(
            f"{len(missing)} collected tests never ran, e.g. {missing[:3]}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
