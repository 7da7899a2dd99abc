"""Reading DVC records: ``.dvc`` files and ``dvc.lock`` outputs, md5s, the local cache.

The private half of :mod:`mlops.data`. A tracked output's record is read at a git commit
(``git show``) or from the workspace on disk (``sha`` is :data:`_WORKSPACE`); the md5 of
a file or directory on disk is computed the way DVC computes it, so staleness can be
checked without running DVC.

Example:
    >>> from mlops.data._dvc_files import _find_output, _find_root, _resolve_rev  # doctest: +SKIP
    >>> root = _find_root("data/train.csv", None)                         # doctest: +SKIP
    >>> _find_output(root, "data/train.csv", _resolve_rev(root, "HEAD"))["md5"]  # doctest: +SKIP
    '08e8aff2619333bf5d3c1edcdc96732b'
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops._git import git as _git
from mlops.errors import (
    DataError,
    DataNotTrackedError,
    NotInRepoError,
    RevisionNotFound,
    StaleDataError,
)

# Where a tracked output's record is read from: a git commit sha, or the workspace.
_WORKSPACE = None


# --- the local DVC cache ----------------------------------------------------------------
def _cache_dir(root: Path) -> Path:
    from dvc.config import Config, ConfigError

    try:
        configured = Config(dvc_dir=str(root / ".dvc")).get("cache", {}).get("dir")
    except ConfigError as exc:
        raise DataError(
            f"The DVC config of {str(root)!r} cannot be read: {exc}",
            hint="Fix .dvc/config (`dvc config --list` shows what DVC sees).",
        ) from exc
    return Path(configured) if configured else root / ".dvc" / "cache"


def _cache_object(cache: Path, md5: str) -> Path | None:
    obj = cache / "files" / "md5" / md5[:2] / md5[2:]  # DVC 3 layout
    return obj if obj.is_file() else None


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
def _record_text(root: Path, sha: str | None, relpath: str) -> str | None:
    """A ``.dvc``/``dvc.lock`` file's text at commit ``sha``, or on disk for the workspace."""
    if sha is not _WORKSPACE:
        return _show(root, sha, relpath)
    file = root / relpath
    return file.read_text(encoding="utf-8") if file.is_file() else None


def _at(sha: str | None) -> str:
    return "the workspace" if sha is _WORKSPACE else f"rev {sha[:12]}"


def _find_output(root: Path, rel: str, sha: str | None) -> dict[str, Any]:
    found = _from_dvc_file(root, rel, sha) or _from_lock(root, rel, sha)
    if found is not None:
        return found
    parent = _tracked_parent(root, rel, sha)
    if parent:
        raise DataNotTrackedError(
            f"{rel!r} is inside the tracked directory {parent!r} at {_at(sha)}; "
            f"only whole tracked outputs have a version.",
            hint=f"Version {parent!r} instead, or track {rel!r} on its own.",
        )
    if sha is not _WORKSPACE and (root / f"{rel}.dvc").exists():
        raise DataNotTrackedError(
            f"{rel}.dvc exists in the workspace but not in git at rev {sha[:12]}.",
            hint=f"Commit it: `git add {rel}.dvc && git commit`, or version the workspace "
            f"record with version({rel!r}, workspace=True).",
        )
    raise DataNotTrackedError(
        f"{rel!r} is not tracked by DVC at {_at(sha)} (no {rel}.dvc and no dvc.lock output).",
        hint=f"Track it with `dvc add {rel}` (or as a stage output in dvc.yaml and run "
        "`dvc repro`)" + (" and commit." if sha is not _WORKSPACE else "."),
    )


def _from_dvc_file(root: Path, rel: str, sha: str | None) -> dict[str, Any] | None:
    text = _record_text(root, sha, f"{rel}.dvc")
    if text is None:
        return None
    doc = _yaml(text, f"{rel}.dvc")
    base = posixpath.dirname(rel)
    for out in doc.get("outs") or []:
        if posixpath.normpath(posixpath.join(base, str(out.get("path", "")))) == rel:
            return _checked(out, f"{rel}.dvc")
    return None


def _lock_files(root: Path, sha: str | None) -> list[str]:
    if sha is _WORKSPACE:  # tracked or new, not ignored, and present on disk
        res = _git(root, "ls-files", "--cached", "--others", "--exclude-standard")
    else:
        res = _git(root, "ls-tree", "-r", "--name-only", sha)
    names = res.stdout.splitlines() if res.returncode == 0 else []
    found = {n for n in names if posixpath.basename(n) == "dvc.lock"}
    if sha is _WORKSPACE:
        found = {n for n in found if (root / n).is_file()}
    return sorted(found)


def _from_lock(root: Path, rel: str, sha: str | None) -> dict[str, Any] | None:
    for lock in _lock_files(root, sha):
        doc = _yaml(_record_text(root, sha, lock) or "", lock)
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
    return {**out, "_record": where}


def _tracked_parent(root: Path, rel: str, sha: str | None) -> str | None:
    parts = rel.split("/")
    for i in range(len(parts) - 1, 0, -1):
        parent = "/".join(parts[:i])
        if _from_dvc_file(root, parent, sha) or _from_lock(root, parent, sha):
            return parent
    return None


# --- staleness --------------------------------------------------------------------------
def _check_fresh(root: Path, rel: str, out: Mapping[str, Any], *, missing_ok: bool) -> None:
    """Refuse a workspace copy whose md5 is not the recorded one.

    ``missing_ok``: a committed version not pulled yet is fine (the record is the truth);
    a workspace record must have its data on disk.
    """
    target = root / rel
    workspace = not missing_ok
    recorded = f"the workspace {out['_record']}" if workspace else "HEAD"
    if not target.exists():
        if missing_ok:
            return
        raise StaleDataError(
            f"{rel!r} is recorded in {recorded} (md5 {out['md5']}) but missing on disk.",
            hint=f"Run `dvc checkout {rel}` (or `dvc repro`) to restore it.",
        )
    actual = _disk_md5(target, out)
    if actual != out["md5"]:
        fix = "`dvc repro` (or `dvc add`)" if workspace else f"`dvc add {rel}` (or `dvc repro`)"
        raise StaleDataError(
            f"{rel!r} changed since it was versioned: the workspace md5 is {actual}, "
            f"{recorded} recorded {out['md5']}.",
            hint=f"Run {fix} to record the data on disk"
            + ("" if workspace else " and commit")
            + f", or `dvc checkout {rel}` to restore the recorded version.",
        )


def _disk_md5(target: Path, out: Mapping[str, Any]) -> str:
    # DVC 3 outputs say `hash: md5` (plain md5 of the bytes); DVC 2 ones say nothing and
    # were hashed with text files dos2unix-normalised.
    name = "md5" if out.get("hash") == "md5" else "md5-dos2unix"
    return _dir_md5(target, name) if target.is_dir() else _file_md5(target, name)


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


# --- the remote, and addressing DVC at a rev -------------------------------------------
def _lasting_root(root: Path) -> Path:
    """The repository whose DVC config names the remote for ``root``: ``root`` itself,
    except inside a ``dvc exp run --temp`` or queued experiment. DVC runs those in a copy of
    the workspace under its ``.dvc/tmp/exps/`` and deletes the copy afterwards; a remote
    configured by a relative path (as ``../.mlops/dvc-remote``) resolves into the copy
    there. DVC names the workspace in ``DVC_ROOT``."""
    parent = os.environ.get("DVC_ROOT")
    if not parent:
        return root
    workspace = Path(parent).resolve()
    if workspace != root and root.is_relative_to(workspace / ".dvc" / "tmp"):
        return workspace
    return root


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
