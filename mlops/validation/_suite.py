"""Expectation suites: plain data, written in code or in YAML (``suites/<name>.yaml``).

Each expectation is ``{"type": "expect_...", "kwargs": {...}}``; the structure is checked
here, the types and kwargs by GX when the suite runs. Import the public names from
:mod:`mlops.validation`.

Example:
    >>> from mlops.validation import Suite
    >>> Suite("s", [{"type": "expect_column_to_exist", "kwargs": {"column": "a"}}]).name
    's'
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.errors import NotFoundError
from mlops.validation._gx import SuiteError
from mlops.validation._json import _canonical_json, _jsonable

__all__ = ["Suite", "SuiteNotFound", "load_suite"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SPEC_KEYS = frozenset({"type", "kwargs", "meta"})


class SuiteNotFound(NotFoundError):
    """No suite file for a bare suite name."""

    code = "suite_not_found"
    default_hint = "Create suites/<name>.yaml in the project root, or pass a path to the file."


@dataclass(frozen=True)
class Suite:
    """A named list of GX expectations, each ``{"type": ..., "kwargs": {...}}``.

    The structure is checked here; the types and kwargs are checked against GX when the
    suite runs (:class:`SuiteError` names the expectation and the fix).

    Example:
        >>> s = Suite("iris", [{"type": "expect_column_to_exist", "kwargs": {"column": "target"}}])
        >>> s.name, len(s.expectations)
        ('iris', 1)
    """

    name: str
    expectations: tuple[dict[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SuiteError(
                f"Suite name {self.name!r} is not valid: use letters, digits, '_', '-' or '.'.",
                hint="Name it like 'iris_train'; the name is used in file and metric names.",
            )
        if isinstance(self.expectations, (str, bytes, Mapping)) or not isinstance(
            self.expectations, Sequence
        ):
            raise SuiteError(
                f"Suite {self.name!r}: expectations must be a list of mappings, "
                f"got {type(self.expectations).__name__}.",
            )
        if not self.expectations:
            raise SuiteError(
                f"Suite {self.name!r} has no expectations.",
                hint="Add at least one {'type': 'expect_...', 'kwargs': {...}} entry.",
            )
        specs = tuple(_check_spec(self.name, i, spec) for i, spec in enumerate(self.expectations))
        object.__setattr__(self, "expectations", specs)

    def __hash__(self) -> int:
        return hash(_canonical_json(self.to_dict()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, default_name: str | None = None) -> Suite:
        """Build from ``{"name": ..., "expectations": [...]}`` (the YAML layout).

        Example:
            >>> Suite.from_dict({"name": "s", "expectations": [
            ...     {"type": "expect_column_to_exist", "kwargs": {"column": "a"}}]}).name
            's'
        """
        if not isinstance(data, Mapping):
            raise SuiteError(f"A suite must be a mapping, got {type(data).__name__}.")
        unknown = sorted(set(data) - {"name", "expectations"})
        if unknown:
            raise SuiteError(
                f"Suite {data.get('name', default_name)!r} has unknown key(s) {unknown}.",
                hint="A suite has only 'name' (default: the file name) and 'expectations'.",
            )
        name = data.get("name", default_name)
        return cls(name, data.get("expectations") or [])

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Suite:
        """Read a suite from a YAML file; the name defaults to the file's stem.

        Example:
            >>> Suite.from_yaml("suites/iris_train.yaml").name   # doctest: +SKIP
            'iris_train'
        """
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SuiteNotFound(f"Suite file {str(path)!r} does not exist.") from exc
        except (OSError, yaml.YAMLError) as exc:
            raise SuiteError(
                f"Cannot read suite file {str(path)!r}: {exc}",
                hint="Fix the YAML syntax; the layout is {name: ..., expectations: [...]}.",
            ) from exc
        return cls.from_dict(data or {}, default_name=path.stem)

    def to_dict(self) -> dict[str, Any]:
        """The definition as JSON-safe data (what the report digest covers).

        Example:
            >>> Suite("s", [{"type": "expect_column_to_exist", "kwargs": {"column": "a"}}]
            ...       ).to_dict()["expectations"][0]["type"]
            'expect_column_to_exist'
        """
        return {"name": self.name, "expectations": _jsonable(list(self.expectations))}


def _check_spec(suite: str, index: int, spec: Any) -> dict[str, Any]:
    where = f"Suite {suite!r}, expectation #{index}"
    if not isinstance(spec, Mapping):
        raise SuiteError(f"{where} must be a mapping, got {spec!r}.")
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise SuiteError(
            f"{where} has unknown key(s) {unknown}.",
            hint="Each expectation has 'type', 'kwargs' and optionally 'meta'.",
        )
    kind = spec.get("type")
    if not isinstance(kind, str) or not kind.startswith("expect_"):
        raise SuiteError(
            f"{where}: 'type' must be an expectation name starting with 'expect_', got {kind!r}.",
        )
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise SuiteError(f"{where} ({kind}): 'kwargs' must be a mapping, got {kwargs!r}.")
    out: dict[str, Any] = {"type": kind, "kwargs": copy.deepcopy(dict(kwargs))}
    if spec.get("meta"):
        out["meta"] = copy.deepcopy(dict(spec["meta"]))
    return out


def load_suite(suite: Suite | str | os.PathLike[str]) -> Suite:
    """A :class:`Suite` from itself, a YAML path, or a bare name.

    A bare name (``"iris_train"``) is looked up as ``suites/<name>.yaml`` (or ``.yml``)
    under the current directory, then under the DVC root (``MLOPS_DVC_ROOT`` or the
    nearest parent holding ``.dvc/``).

    Example:
        >>> load_suite("iris_train").name                            # doctest: +SKIP
        'iris_train'
    """
    if isinstance(suite, Suite):
        return suite
    if not isinstance(suite, (str, os.PathLike)):
        raise SuiteError(
            f"Expected a Suite, a YAML path or a suite name, got {type(suite).__name__}.",
        )
    text = os.fspath(suite)
    if isinstance(suite, os.PathLike) or "/" in text or text.endswith((".yaml", ".yml")):
        return Suite.from_yaml(text)
    candidates = [
        base / "suites" / f"{text}{ext}" for base in _roots() for ext in (".yaml", ".yml")
    ]
    for path in candidates:
        if path.is_file():
            return Suite.from_yaml(path)
    tried = ", ".join(str(p) for p in candidates[::2])
    raise SuiteNotFound(f"No suite named {text!r}: looked for {tried}.")


def _roots() -> list[Path]:
    roots = [Path.cwd()]
    dvc_root = os.environ.get("MLOPS_DVC_ROOT")
    if dvc_root:
        roots.append(Path(dvc_root))
    else:
        found = next((p for p in (Path.cwd(), *Path.cwd().parents) if (p / ".dvc").is_dir()), None)
        if found is not None:
            roots.append(found)
    return list(dict.fromkeys(p.resolve() for p in roots))
