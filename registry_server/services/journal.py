"""Journal writes and the outbox's pending moves: the one module both alias paths share.

:mod:`registry_server.services.aliases` (reads, rollback, drift restore) and
:mod:`registry_server.services.outbox` (applying alias moves) both import this module and
never each other. The journal is a stack of approved holders: a promotion pushes a
holder, a rollback pops the top one, so a rolled-back version is never rolled back *to*.

Example:
    >>> with ctx.db.session() as s:                                   # doctest: +SKIP
    ...     [row.version for row in holder_stack(s, "churn", "production")]
    [1, 3]
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry_server.db.models import AliasJournal, Outbox
from registry_server.services.context import ServerContext
from registry_server.services.holders import identity_columns, identity_of

__all__ = ["INTENT", "holder", "holder_stack", "move_alias", "pending_aliases", "pending_intents"]

INTENT = "alias_intent"


def holder(s: Session, model: str, alias: str, *, lock: bool = False) -> AliasJournal | None:
    """The open journal row of ``model@alias`` (``None``: never set through the server)."""
    stmt = (
        select(AliasJournal)
        .where(
            AliasJournal.model == model,
            AliasJournal.alias == alias,
            AliasJournal.to_at.is_(None),
        )
        .order_by(AliasJournal.id.desc())
    )
    if lock and s.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    return s.scalars(stmt).first()


def holder_stack(s: Session, model: str, alias: str) -> list[AliasJournal]:
    """The approved holders still on the stack, oldest first; the last is the holder now.

    Replays the journal: ``promote`` pushes, ``rollback`` pops the version it replaced.
    A rollback row that does not land on the row below (history written before rollback
    kept to the stack) becomes the bottom of what is left, so nothing older is reachable
    through it.
    """
    rows = s.scalars(
        select(AliasJournal)
        .where(AliasJournal.model == model, AliasJournal.alias == alias)
        .order_by(AliasJournal.id)
    )
    stack: list[AliasJournal] = []
    for row in rows:
        if row.action != "rollback":
            stack.append(row)
            continue
        if stack:
            stack.pop()
        if not stack or stack[-1].version != row.version:
            stack = [row]
        else:
            stack[-1] = row  # the same holder again, now under its rollback row
    return stack


def move_alias(
    s: Session,
    ctx: ServerContext,
    *,
    model: str,
    alias: str,
    version: int,
    request_id: int | None,
    action: str = "promote",
) -> int | None:
    """Close the current journal row and open one for ``version``; the previous version."""
    stmt = select(AliasJournal).where(
        AliasJournal.model == model, AliasJournal.alias == alias, AliasJournal.to_at.is_(None)
    )
    if s.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    now = ctx.now()
    previous = None
    for row in s.scalars(stmt):
        row.to_at = now
        previous = row.version
    s.add(
        AliasJournal(
            model=model,
            alias=alias,
            version=version,
            from_at=now,
            request_id=request_id,
            action=action,
            **identity_columns(identity_of(ctx, model, version)),  # who, not just the number
        )
    )
    s.flush()
    return previous


def pending_intents(s: Session, model: str, alias: str) -> list[Outbox]:
    """The alias moves of ``model@alias`` recorded but not finished, oldest first."""
    stmt = select(Outbox).where(Outbox.kind == INTENT, Outbox.state == "pending")
    rows = s.scalars(stmt.order_by(Outbox.id))
    return [o for o in rows if (o.payload["model"], o.payload["alias"]) == (model, alias)]


def pending_aliases(s: Session) -> set[tuple[str, str]]:
    """``(model, alias)`` pairs with an alias move not finished yet."""
    stmt = select(Outbox.payload).where(Outbox.kind == INTENT, Outbox.state == "pending")
    return {(p["model"], p["alias"]) for p in s.scalars(stmt)}
