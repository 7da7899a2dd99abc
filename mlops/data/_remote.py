"""Fetching data by its DVC md5 straight from a DVC remote, without a git repository.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DataNotInRemote", "fetch", "read_fetched"]

_MD5 = re.compile(r"^[0-9a-f]{32}(\.dir)?$")
_DATA_SUFFIXES = (".csv", ".parquet", ".pq")


class DataNotInRemote(DataError, LookupError):
    """The DVC remote holds no object for an md5 (never pushed, or deleted)."""

    code = "data_not_in_remote"
    default_hint = "Push the data to the DVC remote with `dvc push`, then retry."


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
