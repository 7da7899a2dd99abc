"""Keep the server's own locations out of what callers read.

Error bodies go to any caller, so they must not carry the MLflow tracking or registry URI,
the database URL, or the file paths inside them (``sqlite:////srv/mlflow/mlflow.db``
tells an outsider where the store lives). :func:`redact` replaces them with a placeholder;
the server log keeps the full text.

Example:
    >>> hidden = locations("sqlite:////srv/m/mlflow.db")
    >>> redact("MLflow at sqlite:////srv/m/mlflow.db failed", hidden)
    'MLflow at <server-location> failed'
    >>> redact("cannot open /srv/m/mlflow.db", hidden)
    'cannot open <server-location>'
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["PLACEHOLDER", "locations", "redact", "redact_body"]

PLACEHOLDER = "<server-location>"


def _file_path(uri: str) -> str | None:
    """The file a ``sqlite:``/``file:`` URI (or a plain path) points at."""
    parts = urlsplit(uri)
    if not parts.scheme or len(parts.scheme) == 1:  # a path (or a Windows drive letter)
        return uri
    if parts.netloc:
        return None
    if parts.scheme == "sqlite" or parts.scheme.startswith("sqlite+"):
        return unquote(parts.path[1:]) or None  # sqlite:///rel.db, sqlite:////abs.db
    if parts.scheme == "file":
        return unquote(parts.path) or None
    return None


def _variants(uri: str) -> set[str]:
    """``uri``, its server part, its file path and that file's directory."""
    found = {uri}
    parts = urlsplit(uri)
    if parts.scheme and parts.netloc:
        found.add(f"{parts.scheme}://{parts.netloc}")
    path = _file_path(uri)
    if path:
        found.add(path)
        parent = os.path.dirname(path.rstrip("/"))
        if parent.startswith("/") and parent.count("/") >= 2:  # never "/" or "/tmp" alone
            found.add(parent)
    return {v for v in found if len(v) > 3}


def locations(*uris: object) -> list[str]:
    """Every spelling of ``uris`` worth hiding, longest first (``None`` is skipped).

    Example:
        >>> locations("sqlite:////tmp/x/m.db")[:2]
        ['sqlite:////tmp/x/m.db', '/tmp/x/m.db']
    """
    found: set[str] = set()
    for uri in uris:
        if uri:
            found |= _variants(str(uri))
    return sorted(found, key=lambda v: (-len(v), v))


def redact(text: str, hidden: Iterable[str]) -> str:
    """``text`` with every string of ``hidden`` (longest first) replaced by a placeholder."""
    for value in sorted(hidden, key=len, reverse=True):
        if value in text:
            text = text.replace(value, PLACEHOLDER)
    return text


def redact_body(body: Any, hidden: list[str]) -> Any:
    """A JSON-like value with every string in it redacted."""
    if isinstance(body, str):
        return redact(body, hidden)
    if isinstance(body, dict):
        return {k: redact_body(v, hidden) for k, v in body.items()}
    if isinstance(body, list | tuple):
        return [redact_body(v, hidden) for v in body]
    return body
