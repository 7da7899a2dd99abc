"""Blast radius: which model versions used a dataset, and which protected aliases hold them.

The reverse of :func:`mlops.registry.lineage`. A dataset is named by ``PATH@REV`` (DVC
resolves it to its md5 in the project, as :func:`mlops.data.version` does) or by its DVC
md5. MLflow is searched with filters, never run by run: one ``search_runs`` over every
experiment for the runs whose dataset inputs carry that digest (``mlops.start_run`` logs
training data, ``mlops.evaluate`` evaluation data), one ``search_model_versions`` per 100
of those runs, and for the aliases one registered-model read per model (up to 10 models),
else pages of 1000 registered models.

:func:`versions_using` reads MLflow only. :func:`affected` asks the registry server, which
adds what only it knows: the protected aliases that hold those versions now and, for each,
a rollback plan down the alias journal to the newest earlier holder that did not use the
data. :func:`roll_back` carries the plans out through the server's rollback route (its
permission rule and audit), one journal step at a time.

Example:
    >>> import mlops
    >>> radius = mlops.lineage.affected("data/train.csv@v1.2")   # doctest: +SKIP
    >>> [(h.model, h.alias, h.version) for h in radius.holders]  # doctest: +SKIP
    [('churn', 'production', 7)]
    >>> mlops.lineage.roll_back(radius)                           # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops.errors import ConflictError, DatasetNotRecorded, DatasetRefError
from mlops.registry import _errors

if TYPE_CHECKING:
    from mlops.client import RegistryClient

__all__ = [
    "BlastRadius",
    "Holder",
    "UsedBy",
    "affected",
    "check_md5",
    "recorded_md5",
    "roll_back",
    "versions_using",
]

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


@dataclass(frozen=True)
class Holder:
    """A protected alias held by an affected version, and its rollback plan.

    ``target`` is the version to go back to (``None``: no earlier holder on the journal
    stack is clean), ``steps`` how many rollbacks down the stack reach it, ``through`` the
    affected versions passed on the way.

    Example:
        >>> Holder("churn", "production", 7, target=5, steps=2, through=(6,)).plan
        'roll back churn@production v7 -> v5 (2 steps, through v6)'
    """

    model: str
    alias: str
    version: int
    target: int | None = None
    steps: int = 0
    through: tuple[int, ...] = ()
    reason: str = ""

    @property
    def plan(self) -> str:
        """The plan in one line."""
        if self.target is None:
            return f"no clean holder below {self.model}@{self.alias} v{self.version}: {self.reason}"
        via = f", through {', '.join(f'v{v}' for v in self.through)}" if self.through else ""
        steps = "1 step" if self.steps == 1 else f"{self.steps} steps"
        return (
            f"roll back {self.model}@{self.alias} v{self.version} -> v{self.target} ({steps}{via})"
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Holder:
        """Rebuild from the server's ``holders`` items."""
        plan = d.get("rollback") or {}
        return cls(
            model=str(d["model"]),
            alias=str(d["alias"]),
            version=int(d["version"]),
            target=plan.get("version"),
            steps=int(plan.get("steps") or 0),
            through=tuple(plan.get("through") or ()),
            reason=str(plan.get("reason") or ""),
        )


@dataclass(frozen=True)
class BlastRadius:
    """The registry server's answer for one dataset: versions, protected holders, plans.

    Example:
        >>> r = BlastRadius(md5="0" * 32)
        >>> print(r)
        Data md5 00000000000000000000000000000000: used by no model version.
        >>> "Blast radius" in r._repr_html_()
        True
    """

    md5: str
    path: str | None = None
    rev: str | None = None
    versions: tuple[UsedBy, ...] = ()
    holders: tuple[Holder, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, path: str | None = None, rev: str | None = None):
        """Build from ``GET /v1/lineage/affected``'s body (``path``/``rev``: the caller's)."""
        data = d.get("dataset") or {}
        return cls(
            md5=str(data["md5"]),
            path=path or data.get("path"),
            rev=rev or data.get("rev"),
            versions=tuple(UsedBy.from_dict(v) for v in d.get("versions", [])),
            holders=tuple(Holder.from_dict(h) for h in d.get("holders", [])),
            raw=dict(d),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the server's body, with the dataset as the caller named it)."""
        return {
            **self.raw,
            "dataset": {"md5": self.md5, "path": self.path, "rev": self.rev},
            "versions": [v.to_dict() for v in self.versions],
        }

    def __str__(self) -> str:
        name = f"{self.path}@{self.rev} (md5 {self.md5})" if self.path else f"md5 {self.md5}"
        if not self.versions:
            return f"Data {name}: used by no model version."
        lines = [f"Data {name}: used by {len(self.versions)} model version(s)"]
        for v in self.versions:
            held = f"; holds {', '.join(v.aliases)}" if v.aliases else ""
            lines.append(f"  {v.ref} ({', '.join(v.uses)}){held}")
        lines.append(
            "Protected aliases held by them now:"
            if self.holders
            else "No protected alias holds them."
        )
        lines += [f"  {h.plan}" for h in self.holders]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from mlops import _render

        name = f"{self.path}@{self.rev}" if self.path else self.md5
        rows = [[v.ref, ", ".join(v.uses), ", ".join(v.aliases) or "-"] for v in self.versions]
        body = _render.html_table(["version", "uses", "aliases"], rows, caption="Used by")
        plans = [[f"{h.model}@{h.alias}", f"v{h.version}", h.plan] for h in self.holders]
        body += _render.html_table(["alias", "holder", "plan"], plans, caption="Protected")
        return _render.html_section(f"Blast radius of {name}", body)


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


def _resolve(ref: str | None, md5: str | None, repo: Any) -> tuple[str, str | None, str | None]:
    """``(md5, path, rev)`` for ``PATH@REV`` / ``PATH`` (HEAD) or an md5."""
    if (ref is None) == (md5 is None):
        raise DatasetRefError(
            f"Name the data once: PATH@REV or md5=, not {'both' if ref else 'neither'}.",
        )
    if md5 is not None:
        return check_md5(md5), None, None
    path, sep, rev = str(ref).rpartition("@")
    if not sep:
        path, rev = str(ref), "HEAD"
    if not path or not rev:
        raise DatasetRefError(f"Cannot read PATH@REV from {ref!r}: the path or the rev is empty.")
    from mlops.data import version

    ds = version(path, rev=rev, repo=repo)  # RevisionNotFound / DataNotTrackedError as is
    return ds.md5, ds.path, ds.rev


# --- MLflow: who used the data ------------------------------------------------------------
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


# --- the registry server ------------------------------------------------------------------
def affected(
    ref: str | None = None,
    *,
    md5: str | None = None,
    model: str = "*",
    repo: Any = None,
    registry: RegistryClient | None = None,
) -> BlastRadius:
    """The blast radius of a dataset, from the registry server.

    ``ref`` is ``PATH@REV`` (or ``PATH`` for ``HEAD``), resolved to its md5 through DVC in
    the project (``repo``, default the configured DVC root); or pass ``md5=``. ``model``
    is a glob over model names. ``registry`` defaults to ``RegistryClient()``.

    Example:
        >>> radius = affected("data/train.csv@v1.2")               # doctest: +SKIP
        >>> print(radius)                                          # doctest: +SKIP
    """
    digest, path, rev = _resolve(ref, md5, repo)
    if registry is None:
        from mlops.client import RegistryClient

        registry = RegistryClient()
    body = registry.affected(md5=digest, model=model)
    return BlastRadius.from_dict(body, path=path, rev=rev)


def roll_back(
    radius: BlastRadius, *, registry: RegistryClient | None = None, comment: str = ""
) -> list[dict[str, Any]]:
    """Carry out every plan of ``radius`` through ``POST /v1/aliases/.../rollback``.

    Each plan is ``steps`` rollbacks down the journal stack (the server pops one approved
    holder per call, each checked and audited); before each step the alias must still be
    where the plan expects, else :class:`~mlops.errors.ConflictError` and nothing more
    moves. Holders without a clean target are skipped (they need a promotion). Returns
    ``{"model", "alias", "from", "to"}`` per alias moved.

    Example:
        >>> roll_back(affected("data/train.csv@v1.2"), comment="bad labels")  # doctest: +SKIP
        [{'model': 'churn', 'alias': 'production', 'from': 7, 'to': 5}]
    """
    if registry is None:
        from mlops.client import RegistryClient

        registry = RegistryClient()
    done = []
    why = comment or f"data md5 {radius.md5} was wrong"
    for h in radius.holders:
        if h.target is None:
            continue
        path = [h.version, *h.through, h.target]
        for step in range(h.steps):
            now = registry.alias(h.model, h.alias).version
            if now != path[step]:
                raise ConflictError(
                    f"{h.model}@{h.alias} holds v{now}, not v{path[step]} as planned; "
                    "stopped before moving it.",
                    hint="Ask again (`mlops.lineage.affected(...)`) and roll back the new plan.",
                )
            note = f"{why} (blast radius, step {step + 1}/{h.steps} toward v{h.target})"
            registry.rollback(h.model, h.alias, comment=note)
        done.append({"model": h.model, "alias": h.alias, "from": h.version, "to": h.target})
    return done
