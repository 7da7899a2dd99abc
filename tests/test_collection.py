"""What `make test` hands to pytest-xdist workers: tests handed out by node id, so each
collected test needs its own (tests/conftest.py gives one where a plugin does not, and
fails a run in which two tests still share one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
XDIST = ["-n", "2", "--dist", "loadscope", "--no-loadscope-reorder"]  # as `make test`

# Two items per test function, built as schemathesis builds one per API operation: own
# names, the bare function name as ``originalname`` (pytest 9.2 builds the id from it).
PLUGIN = """
import pytest

def pytest_pycollect_makeitem(collector, name, obj):
    if name.startswith("test_"):
        names = ["twin", "twin"] if name == "test_twins" else ["a", "b"]
        return [
            pytest.Function.from_parent(
                collector, name=f"{name}[{n}]", originalname=name, callobj=obj
            )
            for n in names
        ]
"""


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest with tests/conftest.py as a plugin on what ``tmp_path`` holds."""
    (tmp_path / "conftest.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_XDIST_WORKER", None)  # this test may itself run in a worker
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider"),
            *("-q", "-rA", "-W", "ignore", f"--rootdir={tmp_path}", *args),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_every_test_sharing_a_node_id_runs_under_xdist(tmp_path: Path) -> None:
    (tmp_path / "test_ops.py").write_text("def test_op():\n    pass\n")
    res = _pytest(tmp_path, *XDIST)
    assert res.returncode == 0, res.stdout + res.stderr
    passed = sorted(line for line in res.stdout.splitlines() if line.startswith("PASSED"))
    assert passed == ["PASSED test_ops.py::test_op[a]", "PASSED test_ops.py::test_op[b]"]


def test_a_node_id_naming_two_tests_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "test_ops.py").write_text("def test_twins():\n    pass\n")
    for args in ([], XDIST):
        res = _pytest(tmp_path, *args)
        assert res.returncode == 4, (args, res.stdout, res.stderr)  # a usage error
        assert (
            "1 node ids name more than one test, e.g. ['test_ops.py::test_twins[twin]']"
            in res.stderr
        ), (args, res.stderr)
