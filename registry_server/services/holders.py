"""Who holds an alias: the identity recorded in the journal, checked against MLflow.

A version number names a version only inside one registered model's life: delete the
model (or its newest version) and register again, and the same number is a different
model. So the journal records the holder's identity (:class:`VersionIdentity`: run id,
evidence digest, MLflow's creation times) and every restore or rollback calls
:func:`check_holder` before it writes anything to MLflow.

Example:
    >>> problem = holder_problem(ctx, row)             # doctest: +SKIP
    >>> problem                                         # doctest: +SKIP
    "version 3 of 'churn' was created at 1764680000000, not 1764670000000 as recorded"
    >>> check_holder(ctx, row)     # raises AliasHolderMissing   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.errors import AliasHolderMissing

if TYPE_CHECKING:
    from registry_server.db.models import AliasJournal
    from registry_server.mlflow_gateway import VersionIdentity
    from registry_server.services.context import ServerContext

__all__ = [
    "HOLDER_MISSING",
    "check_holder",
    "holder_identity_ok",
    "holder_problem",
    "identity_columns",
    "identity_of",
]

#: the audit action and attention reason when a recorded holder is gone or changed
HOLDER_MISSING = "alias_holder_missing"

# MLflow's own identity first: it names the sharpest reason ("a different model")
_FIELDS = ("model_created_ms", "version_created_ms", "run_id", "evidence_digest")
_LABELS = {
    "run_id": "run id",
    "evidence_digest": "evidence digest",
    "model_created_ms": "registered-model creation time (ms)",
    "version_created_ms": "version creation time (ms)",
}


def identity_of(ctx: ServerContext, model: str, version: int) -> VersionIdentity | None:
    """MLflow's identity of ``model`` version ``version`` now (``None`` if it is gone).

    Example:
        >>> identity_of(ctx, "churn", 3).run_id              # doctest: +SKIP
        'a1b2c3...'
    """
    return ctx.gateway.identity(model, version)


def identity_columns(identity: VersionIdentity | None) -> dict[str, Any]:
    """The journal columns recording ``identity``: pass them to a new ``AliasJournal`` row.

    Example:
        >>> AliasJournal(model="churn", ..., **identity_columns(identity))  # doctest: +SKIP
    """
    if identity is None:
        return {}
    return {f: getattr(identity, f) for f in _FIELDS}


def _recorded(row: AliasJournal | Any) -> dict[str, Any]:
    return {f: getattr(row, f, None) for f in _FIELDS if getattr(row, f, None) is not None}


def holder_problem(
    ctx: ServerContext, row: AliasJournal | Any, *, seen: VersionIdentity | None = None
) -> str | None:
    """Why the version ``row`` recorded is not the one MLflow holds under that number now.

    ``None`` when every recorded part of the identity still matches. ``row`` is a journal
    row (or anything with ``model``, ``version`` and the identity attributes); ``seen``
    skips the MLflow read when the caller already has the identity. A row from before
    identities were recorded is checked on what it has (its request's evidence digest).

    Example:
        >>> holder_problem(ctx, row)                     # doctest: +SKIP
        "version 1 of 'churn' no longer exists in MLflow"
    """
    recorded = _recorded(row)
    now = seen if seen is not None else identity_of(ctx, row.model, row.version)
    if now is None:
        return f"version {row.version} of {row.model!r} no longer exists in MLflow"
    for field, want in recorded.items():
        got = getattr(now, field)
        if got != want:
            return (
                f"version {row.version} of {row.model!r} has {_LABELS[field]} {got!r}, "
                f"not {want!r} as recorded when it was promoted"
            )
    return None


def holder_identity_ok(ctx: ServerContext, row: AliasJournal | Any) -> bool:
    """True if MLflow still holds, under ``row.version``, the version ``row`` recorded.

    Example:
        >>> holder_identity_ok(ctx, previous_row)        # doctest: +SKIP
        True
    """
    return holder_problem(ctx, row) is None


def check_holder(ctx: ServerContext, row: AliasJournal | Any, *, alias: str | None = None) -> None:
    """Raise :class:`~mlops.errors.AliasHolderMissing` unless ``row``'s holder is intact.

    Call it before pointing an alias back at a recorded holder (rollback, drift restore):
    the number alone may now name a different model.

    Example:
        >>> check_holder(ctx, previous_row)              # doctest: +SKIP
        Traceback (most recent call last):
        AliasHolderMissing: Cannot point churn@production at version 2: ...
    """
    problem = holder_problem(ctx, row)
    if problem is None:
        return
    where = f"{row.model}@{alias or getattr(row, 'alias', '?')}"
    raise AliasHolderMissing(
        f"Cannot point {where} at version {row.version}: {problem}.",
        model=row.model,
        alias=alias or getattr(row, "alias", None),
        version=row.version,
    )
