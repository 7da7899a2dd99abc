"""Bearer tokens: issued once in clear, stored as SHA-256, compared in constant time.

Example:
    >>> len(hash_token("s3cret"))
    64
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mlops.errors import AuthenticationError, ConflictError, GateError, NotFoundError
from mlops.identity import check_user_name, normalise_identity
from registry_server.db.models import Token, User
from registry_server.services.context import Caller

__all__ = [
    "ROLES",
    "IssuedToken",
    "authenticate",
    "create_token",
    "ensure_token",
    "hash_token",
    "list_tokens",
    "revoke_token",
]

ROLES = ("requester", "approver", "admin")


def hash_token(token: str) -> str:
    """SHA-256 hex of a token (what the database keeps)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token; ``token`` is shown once and never stored."""

    id: str
    user: str
    roles: tuple[str, ...]
    token: str

    def to_dict(self) -> dict[str, Any]:
        """``{"id", "user", "roles", "token"}``."""
        return {"id": self.id, "user": self.user, "roles": list(self.roles), "token": self.token}


def _check_roles(roles: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise GateError(
            f"Roles {list(roles)!r} are not valid: each must be one of {list(ROLES)}.",
            hint="Pass one or more of requester, approver, admin.",
        )
    return tuple(dict.fromkeys(roles))


def _ensure_user(session: Session, user: str, now: datetime) -> str:
    """The stored name of ``user``, creating the user; a second spelling of anyone is refused.

    ``Ann`` after ``ann`` is a conflict, not a new person: people are compared by
    normalised identity, so a second spelling would only be a way around the requester
    and distinct-people rules. The name is stored in NFKC form (fullwidth ``ann`` is
    ``ann``); revoked-then-recreated names reuse the old row.
    """
    name = check_user_name(user)
    identity = normalise_identity(name)
    owner = session.scalar(select(User).where(User.identity == identity))
    if owner is not None and owner.name != name:
        raise ConflictError(
            f"User name {name!r} collides with the existing user {owner.name!r} "
            f"(both are {identity!r} once normalised).",
            hint=f"Issue the token for {owner.name!r} if it is the same person, "
            "otherwise choose a distinct name.",
        )
    if owner is None:
        session.add(User(name=name, created_at=now, identity=identity))
        try:
            session.flush()
        except IntegrityError as exc:  # a concurrent create of another spelling won
            raise ConflictError(
                f"User name {name!r} collides with a user created at the same time.",
                hint="Retry: the name is refused if it denotes an existing user.",
            ) from exc
    return name


def create_token(
    session: Session, user: str, roles: list[str] | tuple[str, ...], *, token: str | None = None
) -> IssuedToken:
    """Issue a token for ``user`` with ``roles`` in the caller's transaction.

    Example:
        >>> with db.session() as s:                                   # doctest: +SKIP
        ...     print(create_token(s, "ann", ["approver"]).token)
    """
    now = datetime.now(UTC)
    roles = _check_roles(roles)
    user = _ensure_user(session, user, now)
    token = token or secrets.token_urlsafe(32)
    row = Token(
        id=uuid.uuid4().hex,
        user=user,
        roles=list(roles),
        token_hash=hash_token(token),
        created_at=now,
    )
    session.add(row)
    session.flush()
    return IssuedToken(row.id, user, roles, token)


def ensure_token(session: Session, user: str, roles: list[str], token: str) -> None:
    """Create ``token`` for ``user`` unless it already exists (bootstrap admin)."""
    if session.scalar(select(Token.id).where(Token.token_hash == hash_token(token))) is None:
        create_token(session, user, roles, token=token)


def authenticate(session: Session, authorization: str | None) -> Caller:
    """The caller behind an ``Authorization: Bearer <token>`` header."""
    if not authorization:
        raise AuthenticationError("This route needs a bearer token; none was sent.")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(  # never echo the header: it may be the token itself
            "The Authorization header must be 'Bearer <token>'.",
            hint="Send the header as `Authorization: Bearer <token>`.",
        )
    digest = hash_token(token.strip())
    row = session.scalar(select(Token).where(Token.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest) or row.revoked_at:
        raise AuthenticationError(
            "The bearer token is unknown or revoked.",
            hint="Create a new one with `mlops token create --user NAME --role ROLE`.",
        )
    return Caller(row.user, tuple(row.roles))


def list_tokens(session: Session) -> list[dict[str, Any]]:
    """Every token (without secrets), newest first."""
    rows = session.scalars(select(Token).order_by(Token.created_at.desc()))
    return [
        {
            "id": r.id,
            "user": r.user,
            "roles": list(r.roles),
            "created_at": r.created_at.isoformat(),
            "revoked": r.revoked_at is not None,
        }
        for r in rows
    ]


def revoke_token(session: Session, token_id: str) -> None:
    """Revoke a token by id; :class:`NotFoundError` if there is none."""
    row = session.get(Token, token_id)
    if row is None:
        raise NotFoundError(f"No token with id {token_id!r}.", hint="List them: GET /v1/tokens.")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
