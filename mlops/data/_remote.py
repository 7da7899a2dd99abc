"""Moving data by its DVC md5 between a DVC remote and the places that need it.

:func:`fetch` reads objects straight from a remote, without a git repository (the registry
server's verifier does, to re-derive evidence); :func:`push` sends the objects of given
md5s from a repository's DVC cache to its remote (before a request whose evidence the
server re-derives), and nothing else.

A DVC 3 remote is content-addressed: the object of md5 ``ab12...`` is stored at
``files/md5/ab/12...``; a tracked directory's md5 ends with ``.dir`` and its object is a
JSON manifest (``[{"md5", "relpath"}]``) of the files inside. :func:`fetch` reads through
DVC's own filesystem and object-database API (``dvc.fs.get_cloud_fs``,
``dvc_data.hashfile.db.HashFileDB``), so a local folder, ``s3://`` (credentials from the
usual ``AWS_*`` variables) and the other DVC remotes work alike, and checks the md5 of
every file it downloads: the remote's word is not taken for it either.

Example:
    >>> files = fetch("5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1", remote="/srv/dvc-remote",
    ...               to="/tmp/data", name="data/iris.csv")            # doctest: +SKIP
    >>> read_fetched(files)                                              # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.data._dvc_files import _lasting_root
from mlops.errors import DataError, NotInRepoError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DataNotInCache", "DataNotInRemote", "fetch", "push", "read_fetched"]

_MD5 = re.compile(r"^[0-9a-f]{32}(\.dir)?$")
_DATA_SUFFIXES = (".csv", ".parquet", ".pq")


class DataNotInRemote(DataError, LookupError):
    """The DVC remote holds no object for an md5 (never pushed, or deleted)."""

    code = "data_not_in_remote"
    default_hint = "Push the data to the DVC remote with `dvc push`, then retry."


class DataNotInCache(DataError, LookupError):
    """The repository's DVC cache holds no object for an md5, so it cannot be pushed."""

    code = "data_not_in_cache"
    default_hint = (
        "Produce the data here first (`dvc repro`, or `dvc pull` it), then push it with `dvc push`."
    )


def fetch(
    md5: str,
    *,
    remote: str,
    to: str | os.PathLike[str],
    name: str = "data",
    remote_config: dict[str, Any] | None = None,
) -> list[tuple[Path, str]]:
    """Download the object(s) of ``md5`` from the DVC ``remote`` into the folder ``to``.

    Returns ``(local file, dataset path)`` pairs: one for a file, one per file for a
    ``.dir`` md5 (``name/relpath``). ``remote_config`` holds extra DVC remote options
    (e.g. ``{"endpointurl": "http://minio:9000"}``). Raises :class:`DataNotInRemote`
    when the remote lacks an object, :class:`~mlops.errors.DataError` when it cannot be
    reached or an object's content does not hash to its md5.

    Example:
        >>> fetch(ds.md5, remote=ds.remote, to=tmp, name=ds.path)  # doctest: +SKIP
        [(PosixPath('/tmp/.../5ba2c4...'), 'data/iris.csv')]
    """
    if not isinstance(md5, str) or not _MD5.match(md5):
        raise DataError(
            f"A DVC md5 is 32 lowercase hex characters (optionally '.dir'); got {md5!r}.",
            hint="Pass the md5 recorded in the .dvc file or dvc.lock.",
        )
    odb = _odb(remote, remote_config or {})
    dest = Path(to)
    dest.mkdir(parents=True, exist_ok=True)
    first = _download(odb, md5, dest, remote, name)
    if not md5.endswith(".dir"):
        return [(first, name)]
    try:
        entries = json.loads(first.read_text(encoding="utf-8"))
        items = sorted((str(e["relpath"]), str(e["md5"])) for e in entries)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"The DVC directory object {md5} in {remote!r} is not a manifest.") from exc
    return [
        (_download(odb, oid, dest, remote, f"{name}/{rel}"), f"{name}/{rel}") for rel, oid in items
    ]


def push(
    md5s: Iterable[str],
    *,
    repo: str | os.PathLike[str] = ".",
    remote: str | None = None,
) -> int:
    """Send the objects of ``md5s`` from ``repo``'s DVC cache to its DVC remote.

    ``remote`` names a remote of the repository (default: its default remote, with the
    options and credentials its config gives). A directory md5 (``.dir``) sends its
    manifest and every file in it. Objects the remote already has are not sent again.
    Returns how many objects were sent. Raises :class:`DataNotInCache` naming the md5s
    the cache lacks (then nothing is sent), :class:`~mlops.errors.DataError` when the
    repository has no remote or the remote cannot be written. The repository's lock is
    not taken, so a ``dvc repro`` stage may call it; in a ``dvc exp run --temp`` or queued
    experiment, it pushes to the workspace's remote (the one its datasets name).

    Example:
        >>> push(["5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1"], repo=".")           # doctest: +SKIP
        1
    """
    from mlops._quiet import silenced

    wanted = sorted(set(md5s))
    bad = [m for m in wanted if not isinstance(m, str) or not _MD5.match(m)]
    if bad:
        raise DataError(
            f"A DVC md5 is 32 lowercase hex characters (optionally '.dir'); got {bad[0]!r}.",
            hint="Pass the md5 recorded in the .dvc file or dvc.lock.",
        )
    if not wanted:
        return 0
    with silenced():  # from an experiment's temporary copy: the workspace's remote, same cache
        return _push(wanted, _lasting_root(Path(repo).resolve()), remote)


def _push(wanted: list[str], root: Path, remote: str | None) -> int:
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc_data.hashfile.hash_info import HashInfo

    try:
        repo = Repo(os.fspath(root))
    except DvcException as exc:
        raise NotInRepoError(f"{str(root.resolve())!r} is not in a DVC repository.") from exc
    with repo:
        cache = repo.cache.local
        objects, missing = set(), []
        for oid in wanted:
            ids = [oid, *_dir_entries(cache, oid)] if oid.endswith(".dir") else [oid]
            missing += [i for i in ids if not cache.fs.exists(cache.oid_to_path(i))]
            objects.update(HashInfo("md5", i) for i in ids)
        if missing:
            raise DataNotInCache(
                f"The DVC cache of {str(root)!r} has no object for md5 "
                f"{', '.join(sorted(missing))}: it cannot be pushed from here."
            )
        try:
            result = repo.cloud.push(objects, remote=remote)
        except DvcException as exc:
            raise DataError(
                f"Could not push {len(objects)} object(s) to the DVC remote "
                f"{remote or '(default)'!r} of {str(root)!r}: {exc}",
                hint="Check `dvc remote list` and the remote's credentials (AWS_* for s3://).",
            ) from exc
    if result.failed:
        failed = sorted(h.value for h in result.failed)
        raise DataError(
            f"The DVC remote of {str(root)!r} did not take md5 {', '.join(failed)}.",
            hint="Check the remote is reachable and writable, then `dvc push`.",
        )
    return len(result.transferred)


def _dir_entries(cache: Any, oid: str) -> list[str]:
    """The md5s of the files a ``.dir`` manifest in the local cache lists ([] if absent)."""
    path = cache.oid_to_path(oid)
    if not cache.fs.exists(path):
        return []
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
        return sorted({str(e["md5"]) for e in entries})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"The DVC directory object {oid} in the cache is not a manifest.") from exc


def read_fetched(files: list[tuple[Path, str]]) -> pd.DataFrame:
    """One DataFrame of the CSV/parquet files :func:`fetch` returned (concatenated).

    Example:
        >>> read_fetched(fetch(ds.md5, remote=ds.remote, to=tmp, name=ds.path))  # doctest: +SKIP
    """
    from mlops._optional import require

    pd = require("pandas")
    frames = []
    for local, name in files:
        if name.endswith((".parquet", ".pq")):
            frames.append(pd.read_parquet(local))
        elif name.endswith(".csv") or len(files) == 1:
            frames.append(pd.read_csv(local))
    if not frames:
        raise DataError(
            f"The fetched data ({[n for _, n in files]}) holds no .csv or .parquet files.",
            hint="Point at a CSV/parquet file, or a directory of them.",
        )
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _odb(remote: str, config: dict[str, Any]) -> Any:
    from dvc.fs import get_cloud_fs
    from dvc_data.hashfile.db import HashFileDB

    try:
        cls, conf, path = get_cloud_fs({}, url=remote, **config)
        fs = cls(**conf)
    except Exception as exc:  # dvc raises its own config and import errors by scheme
        raise DataError(
            f"Cannot open the DVC remote {remote!r}: {exc}",
            hint="Check the remote URL and its options (and the AWS_* variables for s3://).",
        ) from exc
    return HashFileDB(fs, fs.join(path, "files", "md5"))


def _download(odb: Any, oid: str, dest: Path, remote: str, name: str) -> Path:
    src = odb.oid_to_path(oid)
    local = dest / oid
    try:
        if not odb.fs.exists(src):
            raise DataNotInRemote(
                f"The DVC remote {remote!r} has no object for {name!r} (md5 {oid}): it was "
                "never pushed there, or was deleted.",
            )
        odb.fs.get_file(src, os.fspath(local))
    except DataNotInRemote:
        raise
    except Exception as exc:  # each remote's filesystem raises its own types
        raise DataError(
            f"Could not read {name!r} (md5 {oid}) from the DVC remote {remote!r}: {exc}",
            hint="Check the remote is reachable and its credentials (AWS_* for s3://).",
        ) from exc
    actual = _md5_of(local)
    if actual != oid.removesuffix(".dir"):
        raise DataError(
            f"The object of {name!r} in the DVC remote {remote!r} hashes to {actual}, not "
            f"its md5 {oid}: the remote's copy was changed.",
            hint="Push the data again from a clean cache (`dvc push`).",
        )
    return local


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fobj:
        for block in iter(lambda: fobj.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
