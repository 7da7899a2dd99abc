"""Blast radius: the versions that used a dataset, the protected aliases they hold, the plans.

The data is named by its DVC md5, or by ``path`` + commit ``rev`` as MLflow runs recorded
it (the server has no DVC project: a branch, a tag or data no run recorded is resolved
by the caller, ``mlops lineage affected PATH@REV``). Which versions used it comes from
MLflow (:meth:`~registry_server.mlflow_gateway.MlflowGateway.versions_using`); which
protected aliases hold them now and where each could go back to comes from the alias
journal, the same stack :func:`~registry_server.services.aliases.rollback` pops: the plan
is the newest holder below the current one whose run did not use the data, and how many
rollbacks reach it.

Example:
    >>> affected(ctx, md5="5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1")["holders"]  # doctest: +SKIP
    [{'model': 'churn', 'alias': 'production', 'version': 7,
      'rollback': {'version': 5, 'steps': 2, 'through': [6], ...}}]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from mlops.errors import DatasetNotRecorded, DatasetRefError
from mlops.lineage import check_md5
from registry_server.db.models import AliasJournal
from registry_server.services import journal
from registry_server.services.context import ServerContext, utc

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from mlops.lineage import UsedBy

__all__ = ["affected"]

_BY_MD5 = (
    "Ask by md5: GET /v1/lineage/affected?md5=MD5 (32 hex characters, '.dir' for a folder, "
    "from the .dvc file or dvc.lock); a branch or tag is resolved in the project first."
)


def affected(
    ctx: ServerContext,
    *,
    md5: str | None = None,
    path: str | None = None,
    rev: str | None = None,
    model: str = "*",
) -> dict[str, Any]:
    """The blast radius of one dataset: ``{"dataset", "versions", "holders"}``.

    ``model`` is a glob over model names. Each holder carries ``rollback``: the target
    ``version`` (``None`` when no earlier holder is clean), ``steps`` (rollbacks needed),
    ``through`` (the affected holders passed on the way) and a ``reason``.

    Example:
        >>> affected(ctx, path="data/train.csv", rev="3f2a9c0d")["dataset"]["md5"]
        ... # doctest: +SKIP
        '5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1'
    """
    digest = _digest(ctx, md5, path, rev)
    used = ctx.gateway.versions_using(digest, model=model)
    holders = _holders(ctx, used) if used else []
    return {
        "dataset": {"md5": digest, "path": path, "rev": rev},
        "versions": [u.to_dict() for u in used],
        "holders": holders,
    }


def _digest(ctx: ServerContext, md5: str | None, path: str | None, rev: str | None) -> str:
    if md5 is not None:
        if path is not None or rev is not None:
            raise DatasetRefError(
                "Name the data by md5 or by path + rev, not both.",
                hint="GET /v1/lineage/affected?md5=MD5, or ?path=PATH&rev=COMMIT.",
            )
        try:
            return check_md5(md5)
        except DatasetRefError as exc:
            raise DatasetRefError(exc.message, hint=_BY_MD5) from exc
    if path is None or rev is None:
        raise DatasetRefError(
            "Name the data by md5, or by path and rev together.",
            hint="GET /v1/lineage/affected?md5=MD5, or ?path=PATH&rev=COMMIT.",
        )
    try:
        return ctx.gateway.recorded_md5(path, rev)
    except DatasetNotRecorded as exc:
        raise DatasetNotRecorded(exc.message, hint=_BY_MD5) from exc


def _holders(ctx: ServerContext, used: tuple[UsedBy, ...]) -> list[dict[str, Any]]:
    """Every protected alias whose holder now is one of ``used``, with its plan."""
    by_version = {(u.model, u.version): u for u in used}
    runs = {u.run_id for u in used}
    models = sorted({u.model for u in used})
    out = []
    with ctx.db.read_sessions() as s:
        open_rows = s.scalars(
            select(AliasJournal)
            .where(AliasJournal.model.in_(models), AliasJournal.to_at.is_(None))
            .order_by(AliasJournal.model, AliasJournal.alias)
        ).all()
        for row in open_rows:
            tp = ctx.policy.rules(row.model, row.alias)
            if tp is None or not tp.protected or not _tainted(row, by_version, runs):
                continue
            out.append(
                {
                    "model": row.model,
                    "alias": row.alias,
                    "version": row.version,
                    "since": utc(row.from_at).isoformat(),
                    "rollback": _plan(s, row, by_version, runs),
                }
            )
    return out


def _tainted(row: Any, by_version: dict[tuple[str, int], Any], runs: set[str]) -> bool:
    """Whether the journal row's holder used the data: by its recorded run, else number."""
    if row.run_id:
        return row.run_id in runs
    return (row.model, row.version) in by_version


def _plan(
    s: Session, row: AliasJournal, by_version: dict[tuple[str, int], Any], runs: set[str]
) -> dict[str, Any]:
    """Walk down the holder stack to the newest holder that did not use the data."""
    stack = journal.holder_stack(s, row.model, row.alias)
    below = list(reversed(stack[:-1])) if stack and stack[-1].id == row.id else []
    through: list[int] = []
    for steps, candidate in enumerate(below, start=1):
        if not _tainted(candidate, by_version, runs):
            return {
                "version": candidate.version,
                "request_id": candidate.request_id,
                "steps": steps,
                "through": through,
                "reason": f"v{candidate.version} is the newest earlier approved holder "
                "that did not use this data",
            }
        through.append(candidate.version)
    why = (
        "every earlier approved holder on the journal used this data too"
        if below
        else "no earlier approved holder is left on the journal"
    )
    return {"version": None, "request_id": None, "steps": 0, "through": through, "reason": why}
