"""The page's sign-in session and CSRF token, kept in a signed, HttpOnly cookie.

The cookie holds the SHA-256 of the bearer token the user signed in with (never the token
itself) and a per-session CSRF token. Every request resolves the caller again from the
token table, so revoking a token ends its page sessions too.

Example:
    >>> len(new_csrf_token()) > 30
    True
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from mlops.errors import AuthenticationError, PermissionDenied
from registry_server.db.models import Token
from registry_server.services.auth import authenticate, hash_token
from registry_server.services.context import Caller

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "SECRET_ENV",
    "CsrfError",
    "SignInRequired",
    "caller_for",
    "check_csrf",
    "new_csrf_token",
    "session_secret",
    "sign_in",
]

SECRET_ENV = "MLOPS_REGISTRY_SESSION_SECRET"
_KEY_FILE = "registry-ui-session.key"


class SignInRequired(AuthenticationError):
    """The page needs a signed-in user; the handler redirects to the sign-in form."""

    code = "sign_in_required"
    default_hint = "Sign in with your registry token at /ui/login."


class CsrfError(PermissionDenied):
    """A form post whose CSRF token is missing or does not match the session's."""

    code = "csrf_failed"
    default_hint = "Reload the page and submit the form again."


def new_csrf_token() -> str:
    """A fresh random CSRF token for a session."""
    return secrets.token_urlsafe(32)


def check_csrf(session: dict, sent: str | None) -> None:
    """Raise :class:`CsrfError` unless ``sent`` equals the session's CSRF token."""
    expected = session.get("csrf")
    if not expected or not sent or not hmac.compare_digest(str(expected), str(sent)):
        raise CsrfError(
            "The form's CSRF token is missing or does not match this session; "
            "the post was refused.",
        )


def sign_in(db_session: Session, token: str) -> tuple[Caller, str]:
    """Authenticate ``token`` with the server's auth service; the caller and token hash."""
    caller = authenticate(db_session, f"Bearer {token.strip()}")
    return caller, hash_token(token.strip())


def caller_for(db_session: Session, token_hash: str | None) -> Caller | None:
    """The caller of a session's token hash, or ``None`` if unknown or revoked."""
    if not token_hash:
        return None
    row = db_session.scalar(select(Token).where(Token.token_hash == token_hash))
    if row is None or row.revoked_at is not None:
        return None
    return Caller(row.user, tuple(row.roles))


def session_secret(explicit: str | None = None, *, settings: object = None) -> str:
    """The cookie signing key: ``explicit``, ``$MLOPS_REGISTRY_SESSION_SECRET``, a
    ``session_secret`` setting, else a key file kept in the mlops home (created once, 0600),
    so that every worker on the machine signs alike."""
    for value in (explicit, os.environ.get(SECRET_ENV), getattr(settings, "session_secret", None)):
        if value:
            return str(value)
    from mlops.config import load_settings

    return _key_file(Path(load_settings().home) / _KEY_FILE)


def _key_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
