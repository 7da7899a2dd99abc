"""Who used a dataset, from MLflow alone: searched with filters, never run by run.

One ``search_runs`` over every experiment for the runs whose dataset inputs carry the md5
(``mlops.start_run`` logs training data, ``mlops.evaluate`` evaluation data), one
``search_model_versions`` per 100 of those runs, and for the aliases one registered-model
read per model (up to 10 models), else pages of 1000 registered models.

Example:
    >>> from mlops.lineage._search import check_md5
    >>> check_md5("5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1")
    '5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1'
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mlops.errors import DatasetNotRecorded, DatasetRefError
from mlops.registry import _errors

_MD5 = re.compile(r"^[0-9a-f]{32}(\.dir)?$")
_CONTEXT_TAG = "mlflow.data.context"
_RUNS_PER_CALL = 100


@dataclass(frozen=True)
class UsedBy:
    """One model version whose run used the data, how (``training``, ``evaluation``) and
    the aliases it holds in MLflow now.

    Example:
        >>> UsedBy("churn", 3, "a" * 32, ("training",)).ref
        'churn/3'
    """

    model: str
    version: int
    run_id: str
    uses: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """``name/version``, as ``mlops.registry.resolve`` reads it."""
        return f"{self.model}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "model": self.model,
            "version": self.version,
            "run_id": self.run_id,
            "uses": list(self.uses),
            "aliases": list(self.aliases),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UsedBy:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            str(d["model"]),
            int(d["version"]),
            str(d["run_id"]),
            tuple(d.get("uses") or ()),
            tuple(d.get("aliases") or ()),
        )


# --- naming the data ----------------------------------------------------------------------
def check_md5(md5: str) -> str:
    """``md5`` if it is a DVC md5 (32 lowercase hex, ``.dir`` for a directory), else raise.

    Example:
        >>> check_md5("5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1")
        '5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1'
    """
    if not isinstance(md5, str) or not _MD5.match(md5):
        raise DatasetRefError(
            f"A DVC md5 is 32 lowercase hex characters (plus '.dir' for a directory); got {md5!r}.",
            hint="Copy it from the .dvc file or dvc.lock (`md5:`), or name the data as "
            "PATH@REV, e.g. `mlops.lineage.affected('data/train.csv@HEAD')`.",
        )
    return md5


def _client(client: Any) -> Any:
    if client is not None:
        return client
    from mlops.registry import _client as registry_client

    return registry_client()


def _paged(call: Any, **kwargs: Any) -> Iterator[Any]:
    token = None
    while True:
        page = call(**kwargs, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _runs_with_digest(client: Any, md5: str) -> dict[str, tuple[str, ...]]:
    """Run id -> the contexts (training, evaluation) in which its inputs have ``md5``."""
    experiments = [e.experiment_id for e in _paged(client.search_experiments, max_results=1000)]
    if not experiments:
        return {}
    runs = _paged(
        client.search_runs,
        experiment_ids=experiments,
        filter_string=f"dataset.digest = '{md5}'",
        max_results=1000,
    )
    found: dict[str, tuple[str, ...]] = {}
    for run in runs:
        uses = set()
        for item in run.inputs.dataset_inputs if run.inputs else ():
            if item.dataset.digest == md5:
                tags = {t.key: t.value for t in item.tags or ()}
                uses.add(tags.get(_CONTEXT_TAG) or "training")
        found[run.info.run_id] = tuple(sorted(uses))
    return found


def versions_using(md5: str, *, model: str = "*", client: Any = None) -> tuple[UsedBy, ...]:
    """Every registered version whose run trained or evaluated on the data with ``md5``.

    ``model`` is a glob over model names. Sorted by model, then version. MLflow is
    searched with filters (see the module text); ``client`` is an ``MlflowClient``
    (default: the configured store). ``uses`` is the context the run logged the data in;
    MLflow keeps one input per dataset and run, so data a run trained on and was later
    evaluated on reads ``training``.

    Example:
        >>> [v.ref for v in versions_using("5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1")]  # doctest: +SKIP
        ['churn/2', 'churn/3']
    """
    check_md5(md5)
    client = _client(client)
    with _errors(f"searching the runs and versions that used md5 {md5}"):
        return _versions_using(client, md5, model)


def _versions_using(client: Any, md5: str, model: str) -> tuple[UsedBy, ...]:
    runs = _runs_with_digest(client, md5)
    run_ids = sorted(runs)
    versions = []
    for start in range(0, len(run_ids), _RUNS_PER_CALL):
        chunk = ", ".join(f"'{r}'" for r in run_ids[start : start + _RUNS_PER_CALL])
        versions += [
            mv
            for mv in _paged(client.search_model_versions, filter_string=f"run_id IN ({chunk})")
            if fnmatch.fnmatchcase(mv.name, model)
        ]
    aliases = _aliases(client, {mv.name for mv in versions}, model)
    out = [
        UsedBy(
            model=mv.name,
            version=int(mv.version),
            run_id=mv.run_id,
            uses=runs[mv.run_id],
            aliases=tuple(sorted(aliases[mv.name].get(int(mv.version), ()))),
        )
        for mv in versions
    ]
    return tuple(sorted(out, key=lambda u: (u.model, u.version)))


def _aliases(client: Any, names: set[str], glob: str) -> dict[str, dict[int, list[str]]]:
    """Model -> version -> aliases: one read per model, or pages of 1000 models when many."""
    if len(names) <= _RUNS_PER_CALL // 10:
        found = [client.get_registered_model(name) for name in sorted(names)]
    else:
        prefix = re.split(r"[*?\[]", glob, maxsplit=1)[0].replace("'", "\\'")
        where = f"name LIKE '{prefix}%'" if prefix else None
        pages = _paged(client.search_registered_models, filter_string=where, max_results=1000)
        found = [rm for rm in pages if rm.name in names]
    out: dict[str, dict[int, list[str]]] = {name: {} for name in names}
    for rm in found:
        for alias, version in (rm.aliases or {}).items():
            out[rm.name].setdefault(int(version), []).append(alias)
    return out


def recorded_md5(path: str, rev: str, *, client: Any = None) -> str:
    """The md5 MLflow runs recorded for ``path`` at git ``rev`` (a full sha or a prefix).

    For callers without the DVC project (the registry server): only data some run
    recorded can be found; :class:`~mlops.errors.DatasetNotRecorded` otherwise.

    Example:
        >>> recorded_md5("data/train.csv", "3f2a9c0d")   # doctest: +SKIP
        '5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1'
    """
    if not re.fullmatch(r"[0-9a-f]{7,40}", rev or ""):
        raise DatasetNotRecorded(
            f"No MLflow run recorded {path!r} at rev {rev!r}: runs record commit shas "
            "(7 to 40 hex characters), not branches or tags.",
            hint="Pass the commit sha or the md5; a branch or tag is resolved in the "
            "project: `mlops.lineage.affected('PATH@REV')`.",
        )
    client = _client(client)
    with _errors(f"searching the runs that recorded {path!r}"):
        found = _recorded_md5(client, path, rev)
    if found is None:
        raise DatasetNotRecorded(f"No MLflow run recorded {path!r} at rev {rev!r}.")
    return found


def _recorded_md5(client: Any, path: str, rev: str) -> str | None:
    import json

    experiments = [e.experiment_id for e in _paged(client.search_experiments, max_results=1000)]
    escaped = path.replace("'", "\\'")
    runs = _paged(
        client.search_runs,
        experiment_ids=experiments,
        filter_string=f"dataset.name = '{escaped}'",
        max_results=1000,
    )
    for run in runs if experiments else ():
        for item in run.inputs.dataset_inputs if run.inputs else ():
            if item.dataset.name != path or item.dataset.source_type != "dvc":
                continue
            try:
                source = json.loads(item.dataset.source)
            except ValueError:
                continue
            if str(source.get("rev", "")).startswith(rev):
                return str(item.dataset.digest)
    return None
