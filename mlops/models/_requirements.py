"""The pip requirements of a scikit-learn model, read from the types its skops file holds.

MLflow infers a model's requirements by loading it in a fresh interpreter and listing what
got imported: seconds per model, and whatever the environment happens to import on the
way comes along (test runners, terminal libraries). A skops file already names the module
of every object, array and function in it, so the packages are known without loading
anything: the distributions that provide those modules, plus what loading a scikit-learn
model through MLflow's pyfunc needs (scikit-learn, skops, NumPy, SciPy, pandas), each
pinned to the installed version. MLflow adds its own pin.

Example:
    >>> from sklearn.linear_model import LogisticRegression
    >>> import skops.io
    >>> [r.split("==")[0] for r in skops_requirements(skops.io.dumps(LogisticRegression()))]
    ['numpy', 'pandas', 'scikit-learn', 'scipy', 'skops']
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from collections.abc import Iterator
from functools import cache
from importlib import metadata
from typing import Any

__all__ = ["skops_requirements"]

#: What loading a skops scikit-learn model through MLflow's pyfunc imports, whatever it holds.
_LOADER_MODULES = ("sklearn", "skops", "numpy", "scipy", "pandas")


def skops_requirements(data: bytes) -> list[str]:
    """Pinned requirements (``name==version``) of the skops dump ``data``, sorted by name.

    Modules that no installed distribution provides (the standard library, the caller's
    own code) add nothing, as with MLflow's inference; such code travels as ``code_paths``.

    Example:
        >>> skops_requirements(skops.io.dumps(LogisticRegression()))[-1]    # doctest: +SKIP
        'skops==0.16.0'
    """
    modules = set(_LOADER_MODULES) | set(_modules_in(data))
    providers = _module_distributions()
    names = {dist for module in modules for dist in providers.get(module, ())}
    return sorted(f"{name}=={_version(name)}" for name in names)


def _modules_in(data: bytes) -> Iterator[str]:
    """The top-level module of every node in the dump's schema."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
    for module in _walk(schema):
        top = module.split(".", 1)[0]
        if top and top not in sys.stdlib_module_names:
            yield top


def _walk(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        module = node.get("__module__")
        if isinstance(module, str):
            yield module
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@cache
def _module_distributions() -> dict[str, tuple[str, ...]]:
    """Top-level module -> the installed distributions providing it (names as installed)."""
    return {m: tuple(sorted(set(d))) for m, d in metadata.packages_distributions().items()}


def _version(name: str) -> str:
    """The installed version without a local label (``2.1.0+cpu`` -> ``2.1.0``), as pip
    cannot install a local label from an index."""
    return metadata.version(name).split("+", 1)[0]
