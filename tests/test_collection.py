"""What `make test` hands to pytest-xdist workers: tests handed out by node id, so each
collected test needs its own (tests/conftest.py gives one where a plugin does not, and
fails a run in which two tests still share one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def xdist() -> list[str]:
    """The pytest options `make test` runs with, with two workers."""
    res = subprocess.run(
        ["make", "-n", "test", "TEST_WORKERS=2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in res.stdout.splitlines() if " -m pytest " in line)
    return line.split(" -m pytest ", 1)[1].split()


# Two items per test function, built as schemathesis builds one per API operation: own
# names, the bare function name as ``originalname`` (pytest 9.2 builds the id from it).
PLUGIN = """
import pytest

def pytest_pycollect_makeitem(collector, name, obj):
    if name in ("test_op", "test_twins"):
        names = ["a", "b"] if name == "test_op" else ["twin", "twin"]
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
    # Only xdist of the installed plugins: loading them all (schemathesis, Hypothesis,
    # Playwright, ...) took 3.5 of the 3.8 s a bare pytest start costs here, in each of
    # the three processes of a run with two workers.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("PYTEST_XDIST_WORKER", None)  # this test may itself run in a worker
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "xdist.plugin", "-p", "tests.conftest"),
            *("-p", "no:cacheprovider"),
            *("-q", "-rA", "-W", "ignore", f"--rootdir={tmp_path}", *args),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_every_test_sharing_a_node_id_runs_under_xdist(tmp_path: Path, xdist: list[str]) -> None:
    (tmp_path / "test_ops.py").write_text("def test_op():\n    pass\n")
    res = _pytest(tmp_path, *xdist)
    assert res.returncode == 0, res.stdout + res.stderr
    passed = sorted(line for line in res.stdout.splitlines() if line.startswith("PASSED"))
    assert passed == ["PASSED test_ops.py::test_op[a]", "PASSED test_ops.py::test_op[b]"]


def test_a_node_id_naming_two_tests_fails_the_run(tmp_path: Path, xdist: list[str]) -> None:
    (tmp_path / "test_ops.py").write_text("def test_twins():\n    pass\n")
    for args in ([], xdist):
        res = _pytest(tmp_path, *args)
        assert res.returncode == 4, (args, res.stdout, res.stderr)  # a usage error
        assert (
            "1 node ids name more than one test, e.g. ['test_ops.py::test_twins[twin]']"
            in res.stderr
        ), (args, res.stderr)


def test_make_test_hands_each_module_whole_to_one_worker(tmp_path: Path, xdist: list[str]) -> None:
    # pytest-xdist's loadscope cuts a node id at its last "::": these parameters made
    # three work units of one module, and its module fixture was built on both workers.
    (tmp_path / "test_addresses.py").write_text(
        "import os, pytest\n"
        "@pytest.fixture(scope='module')\n"
        "def built():\n"
        "    with open('built', 'a') as f:\n"
        "        f.write(os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n"
        "@pytest.mark.parametrize('address', ['::1', '10.0.0.1', '2002:7f00:1::', '8.8.8.8'])\n"
        "def test_address(built, address):\n"
        "    pass\n"
    )
    res = _pytest(tmp_path, *xdist)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("PASSED") == 4, res.stdout
    assert len((tmp_path / "built").read_text().split()) == 1
