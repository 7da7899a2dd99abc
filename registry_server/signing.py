"""The server's Ed25519 signing key: a file or an environment secret, never the database.

It signs every promotion and rollback (an in-toto Statement in a DSSE envelope) and the
audit checkpoints. Where it comes from, first match wins:

- ``MLOPS_REGISTRY_SIGNING_KEY``: the PEM text itself (a secret store's environment);
- ``MLOPS_REGISTRY_SIGNING_KEY_FILE``: a PEM file (``mlops key create FILE`` makes one);
- the embedded default (a SQLite file): ``<database file>.signing.pem`` beside it, made
  once (mode 0600) and announced with its public key on the server's log;
- PostgreSQL and anything else refuse to start with :class:`SigningKeyMissing`.

Example:
    >>> key = load_signing_key("sqlite:///:memory:")   # a throwaway key for a throwaway db
    >>> key.public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    True
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from mlops import signatures as _dsse
from mlops.errors import ConfigError
from registry_server.secret_box import _safe, _sqlite_file

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "SigningKey",
    "SigningKeyInvalid",
    "SigningKeyMissing",
    "load_signing_key",
    "write_key_file",
]

KEY_ENV = "MLOPS_REGISTRY_SIGNING_KEY"
KEY_FILE_ENV = "MLOPS_REGISTRY_SIGNING_KEY_FILE"
log = logging.getLogger("registry_server")


class SigningKeyMissing(ConfigError):
    """The server signs its decisions and no signing key is configured."""

    code = "signing_key_missing"
    default_hint = (
        f"Make one with `mlops key create FILE` and set {KEY_FILE_ENV}=FILE (or {KEY_ENV} "
        "to its PEM text) on every worker; keep it out of the database and its backups."
    )


class SigningKeyInvalid(ConfigError):
    """The configured signing key is not an unencrypted Ed25519 PEM private key."""

    code = "signing_key_invalid"
    default_hint = f"Point {KEY_FILE_ENV} at a key made by `mlops key create FILE`."


@dataclass(frozen=True)
class SigningKey:
    """The private key and where it came from; signs payloads into DSSE envelopes.

    Example:
        >>> key = SigningKey(_dsse.generate_key(), "test")
        >>> len(key.key_id)
        64
    """

    private: Any
    source: str

    @cached_property
    def public_pem(self) -> str:
        """The public key (PEM) verifiers need."""
        return _dsse.public_pem(self.private)

    @cached_property
    def key_id(self) -> str:
        """The key id signatures carry."""
        return _dsse.key_id(self.public_pem)

    def seal(self, payload: bytes, payload_type: str) -> dict[str, Any]:
        """``payload`` signed into a DSSE envelope (its JSON dict)."""
        return _dsse.seal(self.private, payload, payload_type)

    def open(self, envelope: dict[str, Any], payload_type: str) -> bytes:
        """The payload of an envelope this key signed (``VerifySignatureInvalid`` else)."""
        return _dsse.open_sealed(envelope, self.public_pem, payload_type)


def load_signing_key(
    database_url: str, *, pem: str | None = None, path: Path | str | None = None
) -> SigningKey:
    """The signing key for this server (see the module docstring for the order).

    Example:
        >>> load_signing_key("postgresql+psycopg://db/reg")  # doctest: +SKIP
        Traceback (most recent call last):
        SigningKeyMissing: ...
    """
    pem = pem or os.environ.get(KEY_ENV)
    if pem:
        return SigningKey(_private(pem, KEY_ENV), KEY_ENV)
    path = path or os.environ.get(KEY_FILE_ENV)
    if path:
        file = Path(path)
        if not file.is_file():
            raise SigningKeyMissing(f"The signing key file {str(file)!r} does not exist.")
        return SigningKey(_private(file.read_bytes(), str(file)), str(file))
    db_file = _sqlite_file(database_url)
    if db_file is None and database_url.startswith("sqlite"):  # in memory: lives as long
        return SigningKey(_dsse.generate_key(), "generated in memory")
    if db_file is None:
        raise SigningKeyMissing(
            f"No signing key is set for the database {_safe(database_url)}: the server signs "
            "every promotion, rollback and audit checkpoint, and the key must not live in "
            "the database."
        )
    file = db_file.with_name(db_file.name + ".signing.pem")
    if write_key_file(file, exist_ok=True):
        key = SigningKey(_private(file.read_bytes(), str(file)), str(file))
        log.warning("generated the signing key %s; its public key:\n%s", file, key.public_pem)
        return key
    return SigningKey(_private(file.read_bytes(), str(file)), str(file))


def write_key_file(path: Path | str, *, exist_ok: bool = False) -> bool:
    """Write a new Ed25519 key to ``path`` (mode 0600); ``False`` if one was already there.

    Written whole to a private temporary file, then linked into place, so workers starting
    together never read a partial key.

    Example:
        >>> write_key_file("/srv/mlops/signing.pem")  # doctest: +SKIP
        True
    """
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    if file.exists():
        if exist_ok:
            return False
        raise ConfigError(
            f"{str(file)!r} already exists; a signing key is never overwritten.",
            hint="Pick another file, or remove the old key once nothing verifies with it.",
        )
    tmp = file.with_name(f".{file.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(_dsse.private_pem(_dsse.generate_key()))
    try:
        os.link(tmp, file)  # fails if another process linked its key first
    except FileExistsError:
        if not exist_ok:
            raise
        return False
    finally:
        tmp.unlink()
    return True


def _private(pem: bytes | str, where: str) -> Any:
    try:
        return _dsse.load_private_pem(pem, where=where)
    except ValueError as exc:
        raise SigningKeyInvalid(str(exc)) from None
