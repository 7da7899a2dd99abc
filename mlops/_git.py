"""Asking git about a working tree: the one place the library runs ``git``.

Used by :mod:`mlops.data` (revisions, ``git show`` of DVC records) and :mod:`mlops.tracking`
(the commit a run was made at, and whether the tree was dirty).

Example:
    >>> from pathlib import Path
    >>> git(Path("."), "--version").stdout.startswith("git version")
    True
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mlops.errors import DataError

__all__ = ["dirty", "git", "head"]


def git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``git ARGS`` in ``root``, output captured, never raising on a non-zero exit.

    Example:
        >>> git(Path("."), "rev-parse", "--is-inside-work-tree").returncode in (0, 128)
        True
    """
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise DataError(
            "The 'git' executable was not found.", hint="Install git and put it on PATH."
        ) from exc


def _folder(path: str | os.PathLike[str] | None) -> Path | None:
    where = Path(path) if path is not None else Path.cwd()
    if where.is_file():
        where = where.parent
    return where if where.is_dir() else None


def head(path: str | os.PathLike[str] | None = None) -> str | None:
    """The full ``HEAD`` commit of the git repository holding ``path`` (default: cwd), or
    ``None`` outside a repository or before its first commit.

    Example:
        >>> sha = head()                                         # doctest: +SKIP
    """
    where = _folder(path)
    if where is None:
        return None
    res = git(where, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    return res.stdout.strip() if res.returncode == 0 else None


def dirty(path: str | os.PathLike[str] | None = None) -> bool | None:
    """Whether tracked files differ from ``HEAD`` in the repository holding ``path``.

    Untracked files do not count (DVC-tracked data lives in ``.dvc`` files and
    ``dvc.lock``, which are tracked); ``None`` if git cannot tell.

    Example:
        >>> dirty("/nonexistent") is None
        True
    """
    where = _folder(path)
    if where is None:
        return None
    res = git(where, "status", "--porcelain", "--untracked-files=no")
    return bool(res.stdout.strip()) if res.returncode == 0 else None
