"""The library's layout: subpackages by concern, small public faces, no import circles."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("cli", "client", "data", "evaluation", "packaging", "policy", "quickstart")
SUBPACKAGES += ("models", "validation")


def _circles(graph: grimp.ImportGraph, package: str) -> list[tuple[str, str]]:
    """Pairs of children of ``package`` that import each other (directly or not)."""
    children = sorted(graph.find_children(package))
    return [
        (a, b)
        for i, a in enumerate(children)
        for b in children[i + 1 :]
        if graph.chain_exists(a, b, as_packages=True) and graph.chain_exists(b, a, as_packages=True)
    ]


def test_no_module_of_the_library_imports_back_into_its_importer():
    graph = grimp.build_graph("mlops", cache_dir=None)
    packages = ["mlops", *(f"mlops.{name}" for name in SUBPACKAGES)]

    circles = {package: _circles(graph, package) for package in packages}

    assert circles == {package: [] for package in packages}


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_subpackage_is_a_public_face_over_private_modules(name):
    package = importlib.import_module(f"mlops.{name}")
    folder = ROOT / "mlops" / name

    modules = sorted(p.stem for p in folder.glob("*.py") if p.name != "__init__.py")
    assert modules and all(m.startswith("_") for m in modules), modules
    assert all(not n.startswith("_") for n in package.__all__)
    missing = [n for n in package.__all__ if not hasattr(package, n)]
    assert missing == []


@pytest.mark.parametrize(
    "path",
    [
        "mlops.client.RegistryClient",
        "mlops.client.Promotion",
        "mlops.data.version",
        "mlops.data.read_dataframe",
        "mlops.data.DatasetVersion",
        "mlops.evaluation.evaluate",
        "mlops.evaluation.MetricThreshold",
        "mlops.packaging.package",
        "mlops.packaging.serve",
        "mlops.policy.check",
        "mlops.policy.load_policy",
        "mlops.quickstart.run_quickstart",
        "mlops.quickstart.create_workspace",
        "mlops.validation.validate",
        "mlops.validation.Suite",
        "mlops.cli.app",
        "mlops.cli.main",
        "mlops.promote",
        "mlops.validate",
    ],
)
def test_public_import_paths_keep_working(path):
    module, _, attr = path.rpartition(".")

    found = getattr(importlib.import_module(module), attr, None)

    assert found is not None, f"{attr} is gone from {module}"


def test_every_data_file_of_the_library_ships_with_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["mlops"]
    package = ROOT / "mlops"
    files = {p for p in package.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")}
    shipped = {p for pattern in patterns for p in package.glob(pattern)}  # setuptools' globs

    assert package / "packaging" / "_bento_service.py.tmpl" in files
    assert sorted(files - shipped) == []


def _project_imports() -> list[tuple[str, int, str]]:
    """Every ``mlops``/``registry_server``/``pipelines`` module the project's code imports."""
    import ast

    found = []
    for folder in ("mlops", "registry_server", "pipelines"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                found += [
                    (str(path.relative_to(ROOT)), node.lineno, name)
                    for name in names
                    if name.split(".")[0] in {"mlops", "registry_server", "pipelines"}
                ]
    return found


def test_every_import_of_a_project_module_resolves():
    # import-linter skips modules that do not exist, so an import of an old, moved path
    # inside a function body would pass the contracts and fail only when it runs.
    import importlib.util

    missing = [
        f"{path}:{line} imports {name}"
        for path, line, name in _project_imports()
        if importlib.util.find_spec(name) is None
    ]

    assert missing == []
