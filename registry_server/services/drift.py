"""Protected aliases in MLflow kept equal to the journal: every model, every alias.

The rule: a protected alias in MLflow points at the journal's holder, and that holder is
still the version that was promoted (:mod:`registry_server.services.holders`); otherwise
the alias is absent. The sweep reads every registered model with its aliases, a page
(one MLflow call) at a time, and for each protected alias:

- held as the journal says -> nothing (the holder's identity is re-read only when MLflow
  reports the model changed since it was last checked, for the whole page in one search:
  a first sweep over 10,000 models costs 3 MLflow calls per 1,000 models, not 2 per
  model: a page, and the holders in groups of at most 500 names);
- moved or deleted, holder intact -> put back (``alias_drift_restored``);
- holder gone or changed (model re-created, version deleted, evidence re-tagged) ->
  nothing is pointed anywhere: ``alias_holder_missing`` is audited, the journal row is
  marked as needing attention, and a person decides (promote or roll back);
- set where the journal backs nothing (no row, or a holder needing attention) ->
  removed (``alias_unbacked_removed``).

One model failing never stops the others; a model the journal names that MLflow no longer
has is a missing holder. MLflow's own webhooks call :func:`check_model` for one model
within a second of an alias event; the sweep is the fallback and the only path on an
embedded store.

Example:
    >>> reconcile_protected(ctx)        # repairs made  # doctest: +SKIP
    1
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select

from mlops.errors import RegistryUnavailable
from registry_server.db.models import AliasJournal
from registry_server.services import audit
from registry_server.services.context import utc
from registry_server.services.holders import HOLDER_MISSING, holder_problem

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from registry_server.mlflow_gateway import ModelAliases
    from registry_server.services.context import ServerContext

__all__ = ["attention_list", "check_model", "reconcile_protected"]

log = logging.getLogger("registry_server.drift")
T = TypeVar("T")


@dataclass(frozen=True)
class _Backed:
    """What the journal says about one protected alias (a detached copy of the open row)."""

    id: int
    model: str
    alias: str
    version: int
    attention: str | None
    run_id: str | None
    evidence_digest: str | None
    model_created_ms: int | None
    version_created_ms: int | None


def _protected(ctx: ServerContext) -> list[str]:
    """Every alias protected for at least one model (defaults or a model's overrides)."""
    return sorted(ctx.policy.protected_targets())


def _protected_for(ctx: ServerContext, model: str, protected: list[str]) -> list[str]:
    """The aliases of ``protected`` that the policy protects for ``model`` itself."""
    return [a for a in protected if (tp := ctx.policy.rules(model, a)) and tp.protected]


def _governed(ctx: ServerContext, name: str) -> bool:
    return fnmatch.fnmatchcase(name, ctx.governed_models)


def _journal(ctx: ServerContext, aliases: list[str], model: str | None = None) -> dict:
    stmt = select(AliasJournal).where(AliasJournal.alias.in_(aliases), AliasJournal.to_at.is_(None))
    if model is not None:
        stmt = stmt.where(AliasJournal.model == model)
    with ctx.db.read_sessions() as s:
        rows = list(s.scalars(stmt.order_by(AliasJournal.id)))
    return {(r.model, r.alias): _backed(r) for r in rows}


def _backed(r: AliasJournal) -> _Backed:
    return _Backed(
        r.id,
        r.model,
        r.alias,
        r.version,
        r.attention,
        r.run_id,
        r.evidence_digest,
        r.model_created_ms,
        r.version_created_ms,
    )


def reconcile_protected(ctx: ServerContext, *, page_size: int | None = None) -> int:
    """Check every protected alias of every registered model; the number of repairs.

    Raises :class:`~mlops.errors.RegistryUnavailable` if MLflow cannot be read (what was
    already checked stays repaired); a failure in one model is logged and skipped.
    """
    protected = _protected(ctx)
    if not protected:
        return 0
    backed = {k: v for k, v in _journal(ctx, protected).items() if _governed(ctx, k[0])}
    seen: set[str] = set()
    fixed = 0
    for page in _read_ahead(ctx.gateway.alias_pages(page_size or ctx.drift_page_size)):
        models = [m for m in page if _governed(ctx, m.name)]
        ids = ctx.gateway.identities(_to_verify(ctx, models, protected, backed))
        for model in models:
            seen.add(model.name)
            fixed += _guarded(
                ctx, model.name, lambda m=model, i=ids: _check(ctx, m, protected, backed, i)
            )
    for name in sorted({m for m, _ in backed} - seen):  # the journal names it, MLflow has not
        fixed += _guarded(ctx, name, lambda n=name: _check_gone(ctx, n, protected, backed))
    return fixed


def _read_ahead(pages: Iterator[list[T]]) -> Iterator[list[T]]:
    """``pages``, the next one read from MLflow (in one helper thread) while this one's
    identities are read and its aliases checked: MLflow's answer to a page search is most
    of a sweep's time, and the identity searches no longer wait for it."""
    with ThreadPoolExecutor(1, thread_name_prefix="mlops-drift-pages") as pool:
        coming = pool.submit(next, pages, None)
        while (page := coming.result()) is not None:
            coming = pool.submit(next, pages, None)
            yield page


def check_model(ctx: ServerContext, name: str) -> int:
    """Check the protected aliases of one registered model now; the number of repairs.

    Example:
        >>> check_model(ctx, "churn")      # after an MLflow alias webhook  # doctest: +SKIP
        1
    """
    protected = _protected(ctx)
    if not protected or not _governed(ctx, name):
        return 0
    backed = _journal(ctx, protected, model=name)
    model = ctx.gateway.model_aliases(name)
    if model is None:
        return _check_gone(ctx, name, protected, backed)
    return _check(ctx, model, protected, backed)


def _to_verify(
    ctx: ServerContext, models: list[ModelAliases], protected: list[str], backed: dict
) -> list[tuple[str, int, int | None]]:
    """Holders of a page whose identity :func:`_check` must read: the alias is where the
    journal says, but MLflow changed the model since it was last verified (or this process
    never verified it). Read for the whole page at once (:meth:`MlflowGateway.identities`)."""
    wanted = []
    for model in models:
        if ctx.alias_checks.get(model.name) == model.updated_ms:
            continue
        for alias in _protected_for(ctx, model.name, protected):
            row = backed.get((model.name, alias))
            if row is not None and not row.attention and _in_place(row, model):
                wanted.append((model.name, row.version, model.created_ms))
    return wanted


def _in_place(row: _Backed, model: ModelAliases) -> bool:
    """MLflow's alias is on the journal's version, in the registered model it recorded."""
    found = model.aliases.get(row.alias)
    return found == row.version and row.model_created_ms in (None, model.created_ms)


def _guarded(ctx: ServerContext, name: str, check: Any) -> int:
    """Run one model's check; anything but an MLflow outage is logged and skipped."""
    try:
        return check()
    except RegistryUnavailable:
        raise  # the next models would fail the same way: end the pass, retry the next
    except Exception:  # one broken model must not stop the repair of every other
        log.exception("drift check of model %r failed; the other models go on", name)
        return 0


def _check(
    ctx: ServerContext,
    model: ModelAliases,
    protected: list[str],
    backed: dict,
    identities: dict | None = None,
) -> int:
    """Repair one model's protected aliases; ``identities`` are holders already read (a
    holder missing from it is read on its own)."""
    fixed, clean = 0, True
    for alias in _protected_for(ctx, model.name, protected):
        row = backed.get((model.name, alias))
        found = model.aliases.get(alias)
        if row is None or row.attention:
            if found is not None:
                fixed += _remove_unbacked(ctx, model.name, alias)
            continue
        if _in_place(row, model):
            if ctx.alias_checks.get(model.name) == model.updated_ms:
                continue  # nothing changed in MLflow since its holders were last verified
            if (
                holder_problem(ctx, row, seen=(identities or {}).get((model.name, row.version)))
                is None
            ):
                continue
        clean = False
        fixed += _restore(ctx, row.id, model.name, alias)
    if clean:
        ctx.alias_checks[model.name] = model.updated_ms
    else:
        ctx.alias_checks.pop(model.name, None)
    return fixed


def _check_gone(ctx: ServerContext, name: str, protected: list[str], backed: dict) -> int:
    ctx.alias_checks.pop(name, None)
    fixed = 0
    for alias in _protected_for(ctx, name, protected):
        row = backed.get((name, alias))
        if row is not None and not row.attention:
            fixed += _restore(ctx, row.id, name, alias)
    return fixed


def _locked_holder(s: Session, model: str, alias: str) -> tuple[AliasJournal | None, bool]:
    """The open journal row under the model+alias lock, and whether a move is pending."""
    from registry_server.services._rows import lock_target
    from registry_server.services.journal import pending_aliases

    lock_target(s, model, alias)
    holder = s.scalar(
        select(AliasJournal)
        .where(
            AliasJournal.model == model,
            AliasJournal.alias == alias,
            AliasJournal.to_at.is_(None),
        )
        .order_by(AliasJournal.id.desc())
    )
    return holder, (model, alias) in pending_aliases(s)


def _restore(ctx: ServerContext, row_id: int, model: str, alias: str) -> int:
    """Put the holder back, or, if it is gone or changed, write nothing and flag it."""
    with ctx.db.session() as s:
        holder, pending = _locked_holder(s, model, alias)
        if holder is None or holder.id != row_id or holder.attention or pending:
            return 0  # the server itself moved it meanwhile: not drift
        found = ctx.gateway.get_alias(model, alias)
        problem = holder_problem(ctx, holder)
        if problem is not None:
            return _holder_missing(s, ctx, holder, found, problem)
        if found == holder.version:
            return 0
        seen = ctx.gateway.describe_alias(model, alias)
        ctx.gateway.set_alias(model, alias, holder.version)
        payload = {
            "model": model,
            "alias": alias,
            "found_version": found,
            "restored_version": holder.version,
            "seen": seen,
            "where": ctx.gateway.registry_uri,
        }
        audit.append(
            s, actor="system", action="alias_drift_restored", payload=payload, at=ctx.now()
        )
    return 1


def _holder_missing(
    s: Session, ctx: ServerContext, holder: AliasJournal, found: int | None, problem: str
) -> int:
    """Mark the alias for a person; an alias still set in MLflow points at no approved
    version now, so it is removed rather than left on a model nobody approved."""
    if found is not None:
        ctx.gateway.delete_alias(holder.model, holder.alias)
    holder.attention, holder.attention_at = HOLDER_MISSING, ctx.now()
    payload = {
        "model": holder.model,
        "alias": holder.alias,
        "version": holder.version,
        "problem": problem,
        "found_version": found,
        "removed": found is not None,
        "recorded": {
            "run_id": holder.run_id,
            "evidence_digest": holder.evidence_digest,
            "model_created_ms": holder.model_created_ms,
            "version_created_ms": holder.version_created_ms,
        },
        "where": ctx.gateway.registry_uri,
    }
    audit.append(s, actor="system", action=HOLDER_MISSING, payload=payload, at=ctx.now())
    log.error("%s@%s needs attention: %s", holder.model, holder.alias, problem)
    return 1


def _remove_unbacked(ctx: ServerContext, model: str, alias: str) -> int:
    """Remove a protected alias the journal does not back (never promoted, or flagged)."""
    with ctx.db.session() as s:
        holder, pending = _locked_holder(s, model, alias)
        if pending or (holder is not None and not holder.attention):
            return 0  # a promotion got there first: the next check compares with it
        seen = ctx.gateway.describe_alias(model, alias)
        if seen.get("version") is None:
            return 0
        ctx.gateway.delete_alias(model, alias)
        payload = {
            "model": model,
            "alias": alias,
            "found_version": seen["version"],
            "seen": seen,
            "journal": "needs attention" if holder is not None else "no holder",
            "where": ctx.gateway.registry_uri,
        }
        audit.append(
            s, actor="system", action="alias_unbacked_removed", payload=payload, at=ctx.now()
        )
    return 1


def attention_list(ctx: ServerContext, *, limit: int = 50) -> list[dict[str, Any]]:
    """Aliases whose recorded holder is gone or changed, waiting for a person.

    Example:
        >>> attention_list(ctx)                                     # doctest: +SKIP
        [{'model': 'churn', 'alias': 'production', 'version': 3,
          'reason': 'alias_holder_missing', 'since': '2026-12-02T15:00:00+00:00'}]
    """
    stmt = (
        select(AliasJournal)
        .where(AliasJournal.to_at.is_(None), AliasJournal.attention.is_not(None))
        .order_by(AliasJournal.id)
        .limit(limit)
    )
    with ctx.db.read_sessions() as s:
        return [
            {
                "model": r.model,
                "alias": r.alias,
                "version": r.version,
                "reason": r.attention,
                "since": utc(r.attention_at).isoformat() if r.attention_at else None,
            }
            for r in s.scalars(stmt)
        ]
