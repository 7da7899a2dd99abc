"""The registry server's blast radius of a dataset, and carrying its rollback plans out.

Example:
    >>> radius = affected("data/train.csv@v1.2")                 # doctest: +SKIP
    >>> roll_back(radius, comment="labels were shifted")         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops.errors import ConflictError, DatasetRefError
from mlops.lineage._search import UsedBy, check_md5

if TYPE_CHECKING:
    from mlops.client import RegistryClient


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
            landed = registry.rollback(h.model, h.alias, comment=note).version
            if landed != path[step + 1]:
                raise ConflictError(
                    f"Rolling back {h.model}@{h.alias} landed on v{landed}, not "
                    f"v{path[step + 1]} as planned: the alias journal changed meanwhile.",
                    hint="Ask again (`mlops.lineage.affected(...)`) and roll back the new plan.",
                )
        done.append({"model": h.model, "alias": h.alias, "from": h.version, "to": h.target})
    return done
