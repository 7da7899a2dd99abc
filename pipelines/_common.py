"""What every stage script shares: the repository root, params, JSON outputs, exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops.errors import ConfigError, MlopsError

ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = "params.yaml"


def at_root() -> Path:
    """Make the repository root the cwd (stages use repo-relative paths) and return it.

    ``MLOPS_HOME`` keeps its default ``.mlops`` under the root, whatever the caller's cwd.

    Example:
        >>> (at_root() / "dvc.yaml").name  # doctest: +SKIP
        'dvc.yaml'
    """
    os.chdir(ROOT)
    return ROOT


def params(section: str, *, path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """The ``section`` mapping of ``params.yaml``.

    Example:
        >>> params("train")["C"]  # doctest: +SKIP
        1.0
    """
    import yaml

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(
            f"The params file {str(file)!r} does not exist.",
            hint="Run the stage from the repository root, next to params.yaml.",
        ) from exc
    value = data.get(section)
    if not isinstance(value, dict):
        raise ConfigError(
            f"params.yaml has no mapping {section!r} (got {value!r}).",
            hint=f"Add a '{section}:' section to params.yaml; see the repository's example.",
        )
    return value


def need(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], *, where: str) -> Any:
    """``mapping[key]`` checked against ``kind``, or a ConfigError naming ``where.key``.

    Example:
        >>> need({"seed": 42}, "seed", int, where="prepare")
        42
    """
    if key not in mapping:
        raise ConfigError(
            f"params.yaml misses {where}.{key}.", hint=f"Set {where}.{key} in params.yaml."
        )
    value = mapping[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass: never accept true/false where a number is expected
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise ConfigError(
            f"params.yaml {where}.{key} must be {names}, got {mapping[key]!r}.",
            hint=f"Fix {where}.{key} in params.yaml.",
        )
    return value


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as stable, diff-friendly JSON (sorted keys) and return the path.

    Example:
        >>> write_json("reports/model.json", {"name": "iris", "version": 1})  # doctest: +SKIP
        PosixPath('reports/model.json')
    """
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return file


def read_json(path: str | Path) -> Any:
    """Read a JSON output of an earlier stage; a missing file says to run ``dvc repro``.

    Example:
        >>> read_json("reports/model.json")["version"]  # doctest: +SKIP
        1
    """
    file = Path(path)
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"The stage input {str(file)!r} does not exist.",
            hint="Run the pipeline with `dvc repro`, which runs the stages in order.",
        ) from exc


def run(main: Callable[[], object]) -> int:
    """Run a stage's ``main`` quietly; an MlopsError becomes ``code: message`` + hint, exit 1.

    The wrapped tools' progress bars and INFO lines are off unless ``MLOPS_LOG_LEVEL`` is
    ``info`` or ``debug``.

    Example:
        >>> run(lambda: None)
        0
    """
    from mlops import _quiet

    _quiet.configure()  # before the tools load: no bars or INFO lines unless MLOPS_LOG_LEVEL
    try:
        main()
    except MlopsError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    return 0
