"""`make test` sets up what the tests need itself, as CI does (``.ci/run``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_test_runs_the_setup_script_before_pytest() -> None:
    res = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    lines = res.stdout.splitlines()
    setup = lines.index("./scripts/test-setup")
    assert any("-m pytest" in line for line in lines[setup + 1 :]), res.stdout


def test_ci_runs_the_readme_commands_and_leaves_the_setup_to_make() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line and not line.startswith(("#", "set "))]
    assert commands == ['cd "$(dirname "$0")/.."', "make lint", "make test"]
    setup = (ROOT / "scripts" / "test-setup").read_text()
    assert "pg_ctlcluster" in setup and "apt-get install -y -qq chromium" in setup


def test_setup_is_quiet_and_idempotent_when_everything_is_there() -> None:
    res = subprocess.run(
        [str(ROOT / "scripts" / "test-setup")], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert (res.stdout, res.stderr) == ("", "")
