"""Dataset versions from DVC: path + md5 + git rev + remote, and reading data at a rev.

A :class:`DatasetVersion` is read from the ``.dvc`` file (``dvc add``) or the
``dvc.lock`` entry (a stage output) that tracks a path, at a git commit. Versioning the
workspace (no ``rev``) reads what ``HEAD`` recorded and refuses data that changed since:
the md5 of the file on disk must equal the recorded one.

Example:
    >>> import mlops
    >>> ds = mlops.data.version("data/train.csv")                      # doctest: +SKIP
    >>> ds.uri                                                         # doctest: +SKIP
    'data/train.csv@3f1c...'
    >>> df = mlops.data.read_dataframe(ds)                             # doctest: +SKIP
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import html
import json
import os
import posixpath
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import (
    DataError,
    DataNotTrackedError,
    NotInRepoError,
    RevisionNotFound,
    StaleDataError,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DatasetVersion", "open", "read_dataframe", "version"]


@dataclass(frozen=True)
class DatasetVersion:
    """The identity of a dataset: where it lives, its DVC md5, the git rev and the remote.

    Example:
        >>> ds = DatasetVersion(path="data/train.csv", md5="0" * 32, rev="a" * 40,
        ...                     remote="/srv/dvc", repo="/repo")
        >>> ds.uri == "data/train.csv@" + "a" * 40
        True
        >>> DatasetVersion.from_dict(ds.to_dict()) == ds
        True
    """

    path: str
    md5: str
    rev: str
    remote: str | None
    repo: str
    size: int | None = None
    nfiles: int | None = None

    @property
    def uri(self) -> str:
        """``path@rev``: the dataset at one commit."""
        return f"{self.path}@{self.rev}"

    @property
    def is_dir(self) -> bool:
        """True for a tracked directory (its md5 ends with ``.dir``)."""
        return self.md5.endswith(".dir")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with exactly the dataclass fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetVersion:
        """Rebuild from :meth:`to_dict` output (unknown keys are ignored)."""
        size, nfiles = d.get("size"), d.get("nfiles")
        return cls(
            path=str(d["path"]),
            md5=str(d["md5"]),
            rev=str(d["rev"]),
            remote=d.get("remote"),
            repo=str(d["repo"]),
            size=None if size is None else int(size),
            nfiles=None if nfiles is None else int(nfiles),
        )

    def __str__(self) -> str:
        where = f" (remote {self.remote})" if self.remote else ""
        return f"{self.path} md5={self.md5} rev={self.rev[:12]}{where}"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td><code>{html.escape(str(v))}</code></td></tr>"
            for k, v in self.to_dict().items()
            if v is not None
        )
        return f"<table><caption>DatasetVersion</caption>{rows}</table>"


# --- public verbs ---------------------------------------------------------------------
def version(
    path: str | os.PathLike[str],
    *,
    repo: str | os.PathLike[str] | None = None,
    rev: str | None = None,
) -> DatasetVersion:
    """The DVC version of a tracked file or directory, at ``rev`` (default: ``HEAD``).

    Without ``rev`` the workspace copy must match what ``HEAD`` recorded, else
    :class:`~mlops.errors.StaleDataError` (a copy not pulled yet is fine: the recorded
    version is the truth). With ``rev`` the ``.dvc``/``dvc.lock`` of that commit is read
    and the workspace is not looked at. ``remote`` is the repository's default DVC remote
    as configured now.

    Example:
        >>> ds = version("data/train.csv")                     # doctest: +SKIP
        >>> old = version("data/train.csv", rev="v1.0")        # doctest: +SKIP
    """
    root = _find_root(path, repo)
    rel = _relpath(root, path)
    sha = _resolve_rev(root, rev or "HEAD")
    out = _find_output(root, rel, sha)
    if rev is None:
        _check_fresh(root, rel, out)
    return DatasetVersion(
        path=rel,
        md5=str(out["md5"]),
        rev=sha,
        remote=_default_remote(root),
        repo=str(root),
        size=_opt_int(out.get("size")),
        nfiles=_opt_int(out.get("nfiles")),
    )


@contextlib.contextmanager
def open(  # mirrors dvc.api.open; builtins.open is used explicitly below
    ds_or_path: DatasetVersion | str | os.PathLike[str],
    *,
    rev: str | None = None,
    repo: str | os.PathLike[str] | None = None,
    mode: str = "r",
) -> Iterator[Any]:
    """Open a dataset file at a pinned rev (from the cache, else the DVC remote).

    A :class:`DatasetVersion` pins its own ``rev`` and ``repo``.

    Example:
        >>> with open(ds) as f:                                 # doctest: +SKIP
        ...     header = f.readline()
    """
    path, root, pinned = _target(ds_or_path, rev=rev, repo=repo)
    api = _dvc_api()
    try:
        where, inner = _located(root, path, pinned)
        cm = api.open(inner, repo=where, rev=pinned, mode=mode)
        fobj = cm.__enter__()
    except Exception as exc:  # dvc raises many unrelated types; wrap them all here
        raise _wrap_dvc_error(exc, path, pinned) from exc
    try:
        yield fobj
    finally:
        cm.__exit__(None, None, None)


def read_dataframe(
    ds_or_path: DatasetVersion | str | os.PathLike[str],
    *,
    rev: str | None = None,
    repo: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Read a CSV or parquet dataset (a file, or a directory of them) at a pinned rev.

    Example:
        >>> df = read_dataframe(ds)                              # doctest: +SKIP
        >>> df = read_dataframe("data/train.csv", rev="v1.0")    # doctest: +SKIP
    """
    from mlops._optional import require

    pd = require("pandas")
    path, root, pinned = _target(ds_or_path, rev=rev, repo=repo)
    files = _data_files(root, path, pinned)
    frames = []
    for name in files:
        with open(name, rev=pinned, repo=root, mode="rb") as fobj:
            if name.endswith((".parquet", ".pq")):
                frames.append(pd.read_parquet(fobj))
            else:
                frames.append(pd.read_csv(fobj))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


# --- repository, rev and paths ------------------------------------------------------
def _find_root(path: str | os.PathLike[str], repo: str | os.PathLike[str] | None) -> Path:
    if repo is not None:
        start = Path(repo).resolve()
    elif Path(path).is_absolute():
        start = Path(path).resolve().parent
    else:
        from mlops.config import load_settings

        dvc_root = load_settings().dvc_root
        start = Path(dvc_root).resolve() if dvc_root else Path.cwd().resolve()
    for candidate in (start, *start.parents):
        if (candidate / ".dvc").is_dir():
            return candidate
    raise NotInRepoError(
        f"No DVC repository found at {str(start)!r} or any parent folder (looked for '.dvc/')."
    )


def _relpath(root: Path, path: str | os.PathLike[str]) -> str:
    p = Path(path)
    if not p.is_absolute():
        cwd = Path.cwd().resolve()
        p = cwd / p if cwd.is_relative_to(root) else root / p
    p = Path(os.path.normpath(p))
    if not p.is_relative_to(root):
        raise NotInRepoError(
            f"{str(path)!r} is outside the DVC repository {str(root)!r}.",
            hint="Pass a path inside the repository, or repo= the repository that holds it.",
        )
    rel = p.relative_to(root).as_posix()
    if rel in ("", "."):
        raise DataNotTrackedError(f"{str(path)!r} is the repository root, not a dataset.")
    return rel


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise DataError(
            "The 'git' executable was not found.", hint="Install git and put it on PATH."
        ) from exc


def _resolve_rev(root: Path, rev: str) -> str:
    res = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if res.returncode != 0:
        if not (root / ".git").exists() and _git(root, "rev-parse", "--git-dir").returncode:
            raise NotInRepoError(
                f"The DVC repository {str(root)!r} is not inside a git repository.",
                hint="Run `git init` and commit the .dvc files: a version needs a git rev.",
            )
        extra = " (the repository has no commits yet)" if rev == "HEAD" else ""
        raise RevisionNotFound(f"Git revision {rev!r} does not exist in {str(root)!r}{extra}.")
    return res.stdout.strip()


def _git_head(path: str | os.PathLike[str] | None = None) -> str | None:
    """The full ``HEAD`` commit of the git repository holding ``path`` (default: cwd).

    Example:
        >>> sha = _git_head()                                    # doctest: +SKIP
    """
    where = Path(path) if path is not None else Path.cwd()
    if where.is_file():
        where = where.parent
    if not where.is_dir():
        return None
    res = _git(where, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    return res.stdout.strip() if res.returncode == 0 else None


def _show(root: Path, sha: str, relpath: str) -> str | None:
    res = _git(root, "show", f"{sha}:./{relpath}")  # ./ = relative to the DVC root
    return res.stdout if res.returncode == 0 else None


def _yaml(text: str, where: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise DataError(
            f"{where} is not valid YAML: {exc}", hint=f"Fix or regenerate {where}."
        ) from exc


# --- finding the output that tracks a path ---------------------------------------------
def _find_output(root: Path, rel: str, sha: str) -> dict[str, Any]:
    found = _from_dvc_file(root, rel, sha) or _from_lock(root, rel, sha)
    if found is not None:
        return found
    short = sha[:12]
    parent = _tracked_parent(root, rel, sha)
    if parent:
        raise DataNotTrackedError(
            f"{rel!r} is inside the tracked directory {parent!r} at rev {short}; "
            f"only whole tracked outputs have a version.",
            hint=f"Version {parent!r} instead, or track {rel!r} on its own.",
        )
    if (root / f"{rel}.dvc").exists():
        raise DataNotTrackedError(
            f"{rel}.dvc exists in the workspace but not in git at rev {short}.",
            hint=f"Commit it: `git add {rel}.dvc && git commit`.",
        )
    raise DataNotTrackedError(
        f"{rel!r} is not tracked by DVC at rev {short} (no {rel}.dvc and no dvc.lock output).",
        hint=f"Track it with `dvc add {rel}` (or as a stage output in dvc.yaml) and commit.",
    )


def _from_dvc_file(root: Path, rel: str, sha: str) -> dict[str, Any] | None:
    text = _show(root, sha, f"{rel}.dvc")
    if text is None:
        return None
    doc = _yaml(text, f"{rel}.dvc")
    base = posixpath.dirname(rel)
    for out in doc.get("outs") or []:
        if posixpath.normpath(posixpath.join(base, str(out.get("path", "")))) == rel:
            return _checked(out, f"{rel}.dvc")
    return None


def _lock_files(root: Path, sha: str) -> list[str]:
    res = _git(root, "ls-tree", "-r", "--name-only", sha)
    names = res.stdout.splitlines() if res.returncode == 0 else []
    return sorted(n for n in names if posixpath.basename(n) == "dvc.lock")


def _from_lock(root: Path, rel: str, sha: str) -> dict[str, Any] | None:
    for lock in _lock_files(root, sha):
        doc = _yaml(_show(root, sha, lock) or "", lock)
        base = posixpath.dirname(lock)
        for stage in (doc.get("stages") or {}).values():
            for out in stage.get("outs") or []:
                if posixpath.normpath(posixpath.join(base, str(out.get("path", "")))) == rel:
                    return _checked(out, lock)
    return None


def _checked(out: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not out.get("md5"):
        raise DataNotTrackedError(
            f"The entry for {out.get('path')!r} in {where} has no md5 (hash "
            f"{out.get('hash')!r} is not supported).",
            hint="Track it in a local DVC workspace so DVC records an md5.",
        )
    return dict(out)


def _tracked_parent(root: Path, rel: str, sha: str) -> str | None:
    parts = rel.split("/")
    for i in range(len(parts) - 1, 0, -1):
        parent = "/".join(parts[:i])
        if _from_dvc_file(root, parent, sha) or _from_lock(root, parent, sha):
            return parent
    return None


# --- staleness --------------------------------------------------------------------------
def _check_fresh(root: Path, rel: str, out: Mapping[str, Any]) -> None:
    target = root / rel
    if not target.exists():
        return  # not pulled: the recorded version is all there is
    # DVC 3 outputs say `hash: md5` (plain md5 of the bytes); DVC 2 ones say nothing and
    # were hashed with text files dos2unix-normalised.
    name = "md5" if out.get("hash") == "md5" else "md5-dos2unix"
    actual = _dir_md5(target, name) if target.is_dir() else _file_md5(target, name)
    if actual != out["md5"]:
        raise StaleDataError(
            f"{rel!r} changed since it was versioned: the workspace md5 is {actual}, "
            f"HEAD recorded {out['md5']}.",
            hint=f"Run `dvc add {rel}` (or `dvc repro`) and commit, or `dvc checkout {rel}` "
            "to restore the recorded version.",
        )


def _file_md5(path: Path, name: str) -> str:
    if name == "md5":
        digest = hashlib.md5(usedforsecurity=False)
        with builtins.open(path, "rb") as fobj:
            for chunk in iter(lambda: fobj.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    from dvc_data.hashfile.hash import file_md5

    return file_md5(str(path), name=name)


def _dir_md5(path: Path, name: str) -> str:
    # Same bytes DVC hashes for a directory: its sorted [{"md5", "relpath"}] manifest.
    entries = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".dvc")]
        for fname in filenames:
            if fname == ".dvcignore":
                continue
            full = Path(dirpath) / fname
            relpath = full.relative_to(path).as_posix()
            entries.append({"md5": _file_md5(full, name), "relpath": relpath})
    entries.sort(key=lambda e: e["relpath"])
    manifest = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(manifest, usedforsecurity=False).hexdigest() + ".dir"


# --- remote and reading ---------------------------------------------------------------
def _default_remote(root: Path) -> str | None:
    from dvc.config import Config, ConfigError

    try:
        config = Config(dvc_dir=str(root / ".dvc"))
    except ConfigError as exc:
        raise DataError(
            f"The DVC config of {str(root)!r} cannot be read: {exc}",
            hint="Fix .dvc/config (`dvc config --list` shows what DVC sees).",
        ) from exc
    name = config.get("core", {}).get("remote")
    if not name:
        return None
    return config.get("remote", {}).get(name, {}).get("url")


def _target(
    ds_or_path: DatasetVersion | str | os.PathLike[str],
    *,
    rev: str | None,
    repo: str | os.PathLike[str] | None,
) -> tuple[str, Path, str | None]:
    if isinstance(ds_or_path, DatasetVersion):
        return ds_or_path.path, Path(ds_or_path.repo), rev or ds_or_path.rev
    root = _find_root(ds_or_path, repo)
    rel = _relpath(root, ds_or_path)
    if rev is not None:
        _resolve_rev(root, rev)
    return rel, root, rev


def _data_files(root: Path, path: str, rev: str | None) -> list[str]:
    from dvc.fs import DVCFileSystem

    where, inner = _located(root, path, rev)
    prefix = inner[: len(inner) - len(path)]
    fs = DVCFileSystem(repo=where, rev=rev)
    try:
        if not fs.isdir(inner):
            return [path]
        found = fs.find(inner)
    except Exception as exc:  # dvc's own error types vary by backend
        raise _wrap_dvc_error(exc, path, rev) from exc
    names = sorted(
        n.lstrip("/").removeprefix(prefix) for n in found if n.endswith((".csv", ".parquet", ".pq"))
    )
    if not names:
        raise DataError(
            f"The directory {path!r} holds no .csv or .parquet files at rev {rev or 'workspace'}.",
            hint="Point at a CSV/parquet file, or a directory of them.",
        )
    return names


def _located(root: Path, path: str, rev: str | None) -> tuple[str, str]:
    """(repo, path) for dvc: at a rev, DVC opens the git top level, so a DVC project in a
    subfolder (``dvc init --subdir``) is addressed from there."""
    if rev is None:
        return str(root), path
    res = _git(root, "rev-parse", "--show-toplevel")
    top = Path(res.stdout.strip()).resolve() if res.returncode == 0 else root
    if top == root or not root.is_relative_to(top):
        return str(root), path
    return str(top), f"{root.relative_to(top).as_posix()}/{path}"


def _dvc_api() -> Any:
    from mlops._optional import require

    return require("dvc.api")


def _wrap_dvc_error(exc: Exception, path: str, rev: str | None) -> DataError:
    at = f"rev {rev}" if rev else "the workspace"
    kind = type(exc).__name__
    if kind in ("RevError", "UnknownRevision") or "unknown Git revision" in str(exc):
        return RevisionNotFound(f"Git revision {rev!r} does not exist: {exc}")
    if kind in ("PathMissingError", "FileNotFoundError", "OutputNotFoundError"):
        return DataNotTrackedError(f"{path!r} is not in the DVC repository at {at}: {exc}")
    if kind in ("NoRemoteError", "FileMissingError", "CheckoutError"):
        return DataError(
            f"{path!r} at {at} is not in the local cache and cannot be fetched: {exc}",
            hint="Push it from where it was created (`dvc push`) and check the default remote.",
        )
    return DataError(f"Reading {path!r} at {at} failed: {kind}: {exc}")


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
