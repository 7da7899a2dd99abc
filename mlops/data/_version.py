"""Dataset versions from DVC: path + md5 + git rev + remote, and reading data at a rev.

A :class:`DatasetVersion` is read from the ``.dvc`` file (``dvc add``) or the
``dvc.lock`` entry (a stage output) that tracks a path, at a git commit. Versioning the
workspace (no ``rev``) reads what ``HEAD`` recorded and refuses data that changed since:
the md5 of the file on disk must equal the recorded one.

Inside a running ``dvc repro`` an upstream stage's output is recorded only in the
workspace ``dvc.lock`` until the user commits; ``version(path, workspace=True)`` versions
it from there (``committed`` is ``False`` until ``HEAD`` records the same md5).

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
import html
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.data._dvc_files import (
    _WORKSPACE,
    _cache_dir,
    _cache_object,
    _check_fresh,
    _default_remote,
    _disk_md5,
    _find_output,
    _find_root,
    _from_dvc_file,
    _from_lock,
    _lasting_root,
    _located,
    _relpath,
    _resolve_rev,
    _wrap_dvc_error,
)
from mlops.errors import ConfigError, DataError, StaleDataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DatasetVersion", "open", "read_dataframe", "version"]


@dataclass(frozen=True)
class DatasetVersion:
    """The identity of a dataset: where it lives, its DVC md5, the git rev and the remote.

    ``committed`` is ``False`` for a version recorded only in the workspace (a ``.dvc``
    file or ``dvc.lock`` not committed yet, see ``version(..., workspace=True)``): ``rev``
    is then the ``HEAD`` commit the workspace is based on, and the md5 alone names the
    data. ``to_dict()`` carries ``"committed": False`` only for such versions, so the dict
    (and every digest over it) of a committed version is unchanged.

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
    committed: bool = True

    @property
    def uri(self) -> str:
        """``path@rev``: the dataset at one commit."""
        return f"{self.path}@{self.rev}"

    @property
    def is_dir(self) -> bool:
        """True for a tracked directory (its md5 ends with ``.dir``)."""
        return self.md5.endswith(".dir")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields; ``committed`` only when it is ``False``."""
        d = asdict(self)
        if self.committed:
            del d["committed"]
        return d

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
            committed=_as_bool(d.get("committed", True)),
        )

    def __str__(self) -> str:
        where = f" (remote {self.remote})" if self.remote else ""
        state = "" if self.committed else " (uncommitted workspace record)"
        return f"{self.path} md5={self.md5} rev={self.rev[:12]}{state}{where}"

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
    workspace: bool = False,
) -> DatasetVersion:
    """The DVC version of a tracked file or directory, at ``rev`` (default: ``HEAD``).

    Without ``rev`` the workspace copy must match what ``HEAD`` recorded, else
    :class:`~mlops.errors.StaleDataError` (a copy not pulled yet is fine: the recorded
    version is the truth). With ``rev`` the ``.dvc``/``dvc.lock`` of that commit is read
    and the workspace is not looked at. ``remote`` is the repository's default DVC remote
    as configured now; inside a ``dvc exp run --temp`` or queued experiment, the
    workspace's remote, not that of the temporary copy DVC runs it in.

    ``workspace=True`` versions what the workspace recorded but did not commit yet: the
    md5 comes from the ``.dvc`` file or ``dvc.lock`` on disk (e.g. an upstream stage's
    output inside a running ``dvc repro``), the file on disk must match it
    (:class:`~mlops.errors.StaleDataError` otherwise, also when it is missing), and ``rev``
    is the ``HEAD`` commit the workspace is based on. ``committed`` is ``False`` unless
    ``HEAD`` records the same md5 (then the result equals ``version(path)``). Such a
    version is content-addressed (the md5 is its identity): :func:`read_dataframe` and
    :func:`open` read the workspace copy while its md5 still matches, then the object in
    the local DVC cache (where ``dvc repro``/``dvc add`` put it). Commit and ``dvc push``
    to make it readable anywhere at ``rev``.

    Example:
        >>> ds = version("data/train.csv")                     # doctest: +SKIP
        >>> old = version("data/train.csv", rev="v1.0")        # doctest: +SKIP
        >>> fresh = version("data/train.csv", workspace=True)  # doctest: +SKIP
        >>> fresh.committed  # False until dvc.lock is committed  # doctest: +SKIP
        False
    """
    if workspace and rev is not None:
        raise ConfigError(
            f"version() takes rev= or workspace=True, not both (got rev={rev!r}).",
            hint="Drop rev= to version the workspace record, or drop workspace=True.",
        )
    root = _find_root(path, repo)
    rel = _relpath(root, path)
    sha = _resolve_rev(root, rev or "HEAD")
    committed = True
    if workspace:
        out = _find_output(root, rel, _WORKSPACE)
        _check_fresh(root, rel, out, missing_ok=False)
        at_head = _from_dvc_file(root, rel, sha) or _from_lock(root, rel, sha)
        committed = at_head is not None and at_head["md5"] == out["md5"]
    else:
        out = _find_output(root, rel, sha)
        if rev is None:
            _check_fresh(root, rel, out, missing_ok=True)
    return DatasetVersion(
        path=rel,
        md5=str(out["md5"]),
        rev=sha,
        remote=_default_remote(_lasting_root(root)),  # not an experiment's temporary copy's
        repo=str(root),
        size=_opt_int(out.get("size")),
        nfiles=_opt_int(out.get("nfiles")),
        committed=committed,
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

    A :class:`DatasetVersion` pins its own ``rev`` and ``repo``. An uncommitted one
    (``committed=False``) is opened from the workspace if its md5 is still the version's,
    else from the local DVC cache (:class:`~mlops.errors.StaleDataError` if neither has it).

    Example:
        >>> with open(ds) as f:                                 # doctest: +SKIP
        ...     header = f.readline()
    """
    if _uncommitted(ds_or_path, rev):
        if ds_or_path.is_dir:
            raise DataError(
                f"{ds_or_path.path!r} is a tracked directory; open() reads one file.",
                hint="Use read_dataframe() for a directory of CSV/parquet files.",
            )
        ((file, _),) = _uncommitted_files(ds_or_path)
        with builtins.open(file, mode) as fobj:
            yield fobj
        return
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

    An uncommitted :class:`DatasetVersion` (``committed=False``) is read from the
    workspace once its md5 is checked, else from the local DVC cache, as :func:`open` does.

    Example:
        >>> df = read_dataframe(ds)                              # doctest: +SKIP
        >>> df = read_dataframe("data/train.csv", rev="v1.0")    # doctest: +SKIP
    """
    from mlops._optional import require

    pd = require("pandas")
    if _uncommitted(ds_or_path, rev):
        frames = [_frame(pd, f, name) for f, name in _uncommitted_files(ds_or_path)]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    path, root, pinned = _target(ds_or_path, rev=rev, repo=repo)
    files = _data_files(root, path, pinned)
    frames = []
    for name in files:
        with open(name, rev=pinned, repo=root, mode="rb") as fobj:
            frames.append(_frame(pd, fobj, name))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _frame(pd: Any, source: Any, name: str) -> pd.DataFrame:
    if name.endswith((".parquet", ".pq")):
        return pd.read_parquet(source)
    return pd.read_csv(source)


# --- uncommitted (workspace) versions ---------------------------------------------------
def _uncommitted(ds_or_path: Any, rev: str | None) -> bool:
    return isinstance(ds_or_path, DatasetVersion) and not ds_or_path.committed and rev is None


def _uncommitted_files(ds: DatasetVersion) -> list[tuple[Path, str]]:
    """(file to read, its dataset path) of an uncommitted version: the workspace copy if
    its md5 is still the version's, else the objects in the local DVC cache."""
    target = Path(ds.repo) / ds.path
    actual = _disk_md5(target, {"hash": "md5"}) if target.exists() else None
    if actual is not None and (actual == ds.md5 or _disk_md5(target, {}) == ds.md5):
        found = [(target, ds.path)] if target.is_file() else _dir_files(target, ds.path)
    else:
        found = _cached_files(ds)
    if found is None:
        now = "is missing" if actual is None else f"has md5 {actual} now"
        raise StaleDataError(
            f"The uncommitted version of {ds.path!r} (md5 {ds.md5}) is neither in the "
            f"workspace of {ds.repo!r} (the file {now}) nor in its DVC cache.",
            hint=f"Reproduce it (`dvc repro`), or take the current data with "
            f"version({ds.path!r}, workspace=True); commit dvc.lock / the .dvc file and "
            "`dvc push` so a version can be read anywhere at its rev.",
        )
    files = [(f, name) for f, name in found if name.endswith((".csv", ".parquet", ".pq"))]
    if ds.is_dir and not files:
        raise DataError(
            f"The directory {ds.path!r} holds no .csv or .parquet files (md5 {ds.md5}).",
            hint="Point at a CSV/parquet file, or a directory of them.",
        )
    return files if ds.is_dir else found


def _dir_files(target: Path, path: str) -> list[tuple[Path, str]]:
    files = sorted(f for f in target.rglob("*") if f.is_file())
    return [(f, f"{path}/{f.relative_to(target).as_posix()}") for f in files]


def _cached_files(ds: DatasetVersion) -> list[tuple[Path, str]] | None:
    cache = _cache_dir(Path(ds.repo))
    obj = _cache_object(cache, ds.md5)
    if obj is None or not ds.is_dir:
        return None if obj is None else [(obj, ds.path)]
    try:  # the .dir object: DVC's [{"md5", "relpath"}] manifest
        entries = sorted(
            (str(e["relpath"]), str(e["md5"])) for e in json.loads(obj.read_text(encoding="utf-8"))
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    found = []
    for relpath, md5 in entries:
        item = _cache_object(cache, md5)
        if item is None:
            return None
        found.append((item, f"{ds.path}/{relpath}"))
    return found


# --- reading at a rev ------------------------------------------------------------------
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


def _dvc_api() -> Any:
    from mlops._optional import require

    return require("dvc.api")


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _as_bool(value: Any) -> bool:
    """A flag from JSON (a bool) or from MLflow tags (``"True"``/``"False"``)."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("false", "0", "no")
