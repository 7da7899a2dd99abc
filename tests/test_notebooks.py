"""The notebooks run top to bottom on real tools, each in its own throwaway workspace.

Each notebook builds its sandbox with :mod:`mlops.quickstart` (git + DVC project, local
DVC remote, MLflow and Bento stores, the registry server where it needs one) in the folder
named by ``MLOPS_NOTEBOOK_WORKDIR``. A notebook that fails midway still leaves the pid of
its registry server there, so the test stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", ()):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        data = out.get("data", {})
        parts.extend(data.get(kind, "") + "\n" for kind in ("text/plain", "text/html"))
    return "".join(parts)


def _kill_leftover_server(workdir: Path) -> None:
    pid_file = workdir / "project" / ".mlops" / "registry-server.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)


async def _execute(name: str, workdir: Path) -> tuple[nbformat.NotebookNode, str, Path]:
    """Run ``notebooks/<name>`` in a python3 kernel of this interpreter; all output text."""
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "BENTOML_"))}
    env["MLOPS_NOTEBOOK_WORKDIR"] = str(workdir)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # the kernel talks over Unix sockets in the workdir, not TCP: ports picked at random
    # from the ephemeral range were once taken by another test's connection in between
    # ("Address already in use"), and the kernel never answered
    kernel = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(workdir / "kernel"))
    client = NotebookClient(
        book,
        km=kernel,
        timeout=600,
        kernel_name="python3",
        coalesce_streams=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        await client.async_execute(env=env)
    finally:
        _kill_leftover_server(workdir)
    return book, "\n".join(_text(c) for c in book.cells if c.cell_type == "code"), workdir


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Both notebooks, executed side by side (each waits mostly on its own subprocesses)."""

    async def both() -> list[tuple | BaseException]:
        return await asyncio.gather(
            _execute("quickstart.ipynb", tmp_path_factory.mktemp("nb-quickstart")),
            _execute("why_blocked.ipynb", tmp_path_factory.mktemp("nb-why-blocked")),
            return_exceptions=True,  # a failing notebook does not cut the other one short
        )

    quickstart, why_blocked = asyncio.run(both())
    for outcome in (quickstart, why_blocked):
        if isinstance(outcome, BaseException):
            raise outcome
    return {"quickstart": quickstart, "why_blocked": why_blocked}


@pytest.fixture
def quickstart_nb(notebooks: dict[str, tuple]) -> tuple:
    return notebooks["quickstart"]


@pytest.fixture
def why_blocked_nb(notebooks: dict[str, tuple]) -> tuple:
    return notebooks["why_blocked"]


def test_quickstart_promotes_through_two_approvals(quickstart_nb) -> None:
    book, text, workdir = quickstart_nb
    errors = [o for c in book.cells for o in c.get("outputs", ()) if o.output_type == "error"]
    assert errors == []
    assert f"workspace: {workdir / 'project'}" in text
    assert "alice approved -> pending" in text and "bob approved -> promoted" in text
    assert "iris-classifier@production = v1" in text
    assert "registry server stopped" in text
    assert (
        not (workdir / "project" / ".mlops" / "registry-server.log").read_text().count("Traceback")
    )


def test_quickstart_shows_the_evidence_and_reports(quickstart_nb) -> None:
    _, text, _ = quickstart_nb
    assert "evidence digest:" in text
    assert "suite iris_train: success=True" in text
    assert "smoke test passed: True" in text
    assert "ValidationReport(suite='iris_train', success=True" in text
    assert "EvaluationReport(model='iris-classifier', candidate_version=1" in text
    assert "<table" in text  # rich notebook output (_repr_html_) of the entities


def test_why_blocked_names_the_failing_suite(why_blocked_nb) -> None:
    book, text, _ = why_blocked_nb
    assert not [o for c in book.cells for o in c.get("outputs", ()) if o.output_type == "error"]
    assert "policy_violation: iris-classifier v1 cannot be promoted to 'production'" in text
    assert "checks.suites.iris_train:" in text
    assert (
        "expect_column_values_to_be_between on 'sepal length (cm)' "
        "{'column': 'sepal length (cm)', 'min_value': 4.0, 'max_value': 8.5}: "
        "105 unexpected value(s)"
    ) in text


def test_why_blocked_names_the_regression_against_the_champion(why_blocked_nb) -> None:
    _, text, _ = why_blocked_nb
    worse = r"FAIL checks\.must_beat_champion: accuracy 0\.\d+ is worse than champion"
    assert re.search(worse, text)
    assert re.search(r"FAIL checks\.metrics\.accuracy: accuracy: 0\.\d+ vs champion", text)
    assert "PASS checks.suites.iris_train:" in text and "PASS checks.smoke_test:" in text
    assert "'champion_alias': 'staging'" in text or "champion_alias='staging'" in text


# --- quiet by default: what the wrapped tools print stays out of the outputs ----------------
NOISE = re.compile(
    r"\bINFO\b|\bWARNING\b|\w+Warning\b|\d+%\||it/s\]|Downloading artifacts|IProgress"
    r"|Successfully registered model|Created version '"
)


def _noise(book: nbformat.NotebookNode) -> list[str]:
    """Every output that is stderr or looks like a tool's log line, bar or warning."""
    found = []
    for cell in book.cells:
        for out in cell.get("outputs", ()):
            text = out.get("text", "") + out.get("data", {}).get("text/plain", "")
            if out.get("name") == "stderr" or NOISE.search(text):
                found.append(text[:300])
    return found


@pytest.mark.parametrize("name", ["quickstart.ipynb", "why_blocked.ipynb"])
def test_committed_notebooks_hold_no_progress_bars_warnings_or_info_lines(name: str) -> None:
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert any(cell.get("outputs") for cell in book.cells)  # executed (scripts/execute-notebooks)
    assert _noise(book) == []


def test_executed_notebooks_are_quiet(notebooks: dict[str, tuple]) -> None:
    for name, (book, _, _) in notebooks.items():
        assert _noise(book) == [], name
