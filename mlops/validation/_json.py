"""JSON-safe values and canonical JSON bytes: what the suite and report digests cover.

Example:
    >>> _canonical_json(_jsonable({"b": float("nan"), "a": {2, 1}}))
    b'{"a":[1,2],"b":null}'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__: list[str] = []


def _jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy scalars to Python, NaN/inf to None, sets sorted."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return _jsonable(item())
    tolist = getattr(value, "tolist", None)  # numpy arrays
    if callable(tolist):
        return _jsonable(tolist())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()
