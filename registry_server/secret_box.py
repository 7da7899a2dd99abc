"""Encryption at rest for the secrets the server must read back (webhook signing keys).

The key is never stored in the database, so a dump of the database alone does not reveal
the secrets. It comes from ``MLOPS_REGISTRY_SECRET_KEY``: one Fernet key (AES-128-CBC with
HMAC-SHA256, from the ``cryptography`` package), or several separated by commas to rotate
it (the first encrypts, every one decrypts). Without the setting:

- the embedded default (a SQLite file) uses a key file beside the database,
  ``<database file>.key`` (created once, mode 0600): zero set-up on one machine;
- PostgreSQL (workers on several machines must share one key) and anything else refuse
  to start with :class:`SecretKeyMissing`, which says how to make a key.

Example:
    >>> box = SecretBox([Fernet.generate_key()])
    >>> box.open(box.seal(b"whsec")) == b"whsec"
    True
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from mlops.errors import ConfigError

__all__ = [
    "KEY_ENV",
    "SecretBox",
    "SecretKeyInvalid",
    "SecretKeyMissing",
    "key_file_for",
    "load_box",
]

KEY_ENV = "MLOPS_REGISTRY_SECRET_KEY"
_MAKE_KEY = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


class SecretKeyMissing(ConfigError):
    """The server needs a key to encrypt webhook secrets and none is configured."""

    code = "secret_key_missing"
    default_hint = (
        f"Make a key with `{_MAKE_KEY}` and set {KEY_ENV} to it on every worker; "
        "keep it out of the database and its backups."
    )


class SecretKeyInvalid(ConfigError):
    """The configured key is malformed, or is not the key the secrets were sealed with."""

    code = "secret_key_invalid"
    default_hint = (
        f"Set {KEY_ENV} to the key the secrets were encrypted with (when rotating it, "
        "list the new key first and the old one after a comma)."
    )


class SecretBox:
    """Seal and open small secrets with one or more Fernet keys (the first seals).

    Example:
        >>> SecretBox([Fernet.generate_key()]).seal(b"x").startswith("gAAAA")
        True
    """

    def __init__(self, keys: list[bytes]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError) as exc:
            raise SecretKeyInvalid(
                f"{KEY_ENV} is not a list of Fernet keys (32 url-safe base64 bytes each): {exc}."
            ) from None

    def seal(self, data: bytes) -> str:
        """``data`` encrypted and authenticated, as text for a database column."""
        return self._fernet.encrypt(data).decode("ascii")

    def open(self, token: str) -> bytes:
        """The bytes sealed in ``token``; :class:`SecretKeyInvalid` if no key opens it."""
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except InvalidToken:
            raise SecretKeyInvalid(
                "A stored webhook secret cannot be decrypted with the configured "
                f"{KEY_ENV} (wrong key, or the data was altered)."
            ) from None


def key_file_for(database_url: str) -> Path | None:
    """Where the embedded default keeps its key: beside the SQLite file (``None`` else).

    Example:
        >>> key_file_for("sqlite:////srv/mlops/registry.db")
        PosixPath('/srv/mlops/registry.db.key')
    """
    path = _sqlite_file(database_url)
    return None if path is None else path.with_name(path.name + ".key")


def _sqlite_file(database_url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def load_box(database_url: str, secret_key: str | None = None) -> SecretBox:
    """The box for this server: ``secret_key`` (else ``$MLOPS_REGISTRY_SECRET_KEY``), else
    the SQLite key file, else a throwaway key for an in-memory database.

    Raises :class:`SecretKeyMissing` for PostgreSQL without a key.

    Example:
        >>> box = load_box("sqlite:///:memory:")  # a throwaway key: the data dies with it
        >>> box.open(box.seal(b"x"))
        b'x'
    """
    value = secret_key or os.environ.get(KEY_ENV)
    if value:
        return SecretBox([k.strip().encode() for k in value.split(",") if k.strip()])
    path = key_file_for(database_url)
    if path is None and database_url.startswith("sqlite"):  # in memory: lives as long
        return SecretBox([Fernet.generate_key()])
    if path is None:
        raise SecretKeyMissing(
            f"No {KEY_ENV} is set for the database {_safe(database_url)}; webhook secrets "
            "are stored encrypted and the key must not live in the database."
        )
    return SecretBox([_key_file(path)])


def _key_file(path: Path) -> bytes:
    """Read the key file, creating it first if missing: written whole to a private temporary
    file, then linked into place, so workers starting together never read a partial key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
        try:
            os.link(tmp, path)  # fails if another process linked its key first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes().strip()


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
