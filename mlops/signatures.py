"""Signatures and digests the registry server's decisions are checked with.

The server signs its decisions (in-toto Statements) and its audit checkpoints with an
Ed25519 key into DSSE envelopes, through securesystemslib (no hand-made crypto); anyone
holding only the public key checks them with :func:`open_sealed`. :func:`tree_digest` is
the SHA-256 of a folder (a model's files, a built Bento) as an in-toto subject carries it:
taken over the sorted relative paths and each file's own SHA-256, so it depends on
neither listing order, timestamps nor where the folder lives.

Example:
    >>> key = generate_key()
    >>> env = seal(key, b'{"x":1}', "application/json")
    >>> open_sealed(env, public_pem(key), "application/json")
    b'{"x":1}'
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops._optional import require
from mlops.errors import VerifyKeyInvalid, VerifySignatureInvalid

__all__ = [
    "CHECKPOINT_TYPE",
    "IN_TOTO",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "file_digest",
    "files_digest",
    "generate_key",
    "key_id",
    "load_private_pem",
    "open_sealed",
    "private_pem",
    "public_pem",
    "seal",
    "tree_digest",
]

IN_TOTO = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://mlops.invalid/attestation/decision/v1"
CHECKPOINT_TYPE = "application/vnd.mlops.audit-checkpoint+json"
_CHUNK = 1 << 20


def generate_key() -> Any:
    """A new Ed25519 private key (a ``cryptography`` object)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def private_pem(key: Any) -> bytes:
    """The private key as unencrypted PKCS#8 PEM (keep it out of the database)."""
    from cryptography.hazmat.primitives import serialization as ser

    return key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())


def public_pem(key: Any) -> str:
    """The public half as SubjectPublicKeyInfo PEM text: what verifiers are given."""
    from cryptography.hazmat.primitives import serialization as ser

    raw = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    return raw.decode("ascii")


def load_private_pem(pem: bytes | str, *, where: str) -> Any:
    """An Ed25519 private key from PEM; ``ValueError`` naming ``where`` if it is not one."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{where} holds a {type(key).__name__}, not an Ed25519 key.")
    return key


def _public_key(pem: bytes | str) -> Any:
    require("securesystemslib.signer")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey

    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise VerifyKeyInvalid(f"The public key is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise VerifyKeyInvalid(f"The public key is a {type(key).__name__}, not Ed25519.")
    return SSlibKey.from_crypto(key)


def key_id(pem: bytes | str) -> str:
    """The securesystemslib key id of a public key PEM (what signatures name)."""
    return _public_key(pem).keyid


def seal(key: Any, payload: bytes, payload_type: str) -> dict[str, Any]:
    """``payload`` in a DSSE envelope signed with ``key``, as its JSON dict."""
    require("securesystemslib.dsse")
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner

    envelope = Envelope(payload=payload, payload_type=payload_type, signatures={})
    envelope.sign(CryptoSigner(key))
    return envelope.to_dict()


def open_sealed(envelope: Mapping[str, Any], public: bytes | str, payload_type: str) -> bytes:
    """The payload of ``envelope`` once its signature verifies with ``public``.

    Raises :class:`VerifySignatureInvalid` for a malformed envelope, another payload type,
    or a signature that is not ``public``'s over exactly these bytes.
    """
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import FormatError, VerificationError

    key = _public_key(public)
    try:
        env = Envelope.from_dict(copy.deepcopy(dict(envelope)))
    except (KeyError, ValueError, TypeError, FormatError) as exc:
        raise VerifySignatureInvalid(f"The envelope is malformed: {exc!r}.") from None
    if env.payload_type != payload_type:
        raise VerifySignatureInvalid(
            f"The envelope holds {env.payload_type!r}, not {payload_type!r}."
        )
    try:
        env.verify([key], 1)
    except (VerificationError, ValueError) as exc:
        raise VerifySignatureInvalid(
            f"The signature does not verify with key {key.keyid[:16]}: {exc}."
        ) from None
    return env.payload


# --- digests ---------------------------------------------------------------------------
def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex of one file's bytes.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(delete=False) as f:
        ...     _ = f.write(b"")
        >>> file_digest(f.name)[:8]
        'e3b0c442'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(root: str | os.PathLike[str]) -> str:
    """SHA-256 over ``<relative path> <sha256>`` lines of every file under ``root``, sorted.

    Python's byte-code caches (``__pycache__``) are left out: serving a Bento compiles its
    sources there without changing what was built. A single file is hashed as a tree of
    one file named after itself.

    Example:
        >>> tree_digest(root) == tree_digest(str(root))  # doctest: +SKIP
        True
    """
    base = Path(root)
    if base.is_file():
        return _lines_digest({base.name: file_digest(base)})
    return _lines_digest(
        {
            p.relative_to(base).as_posix(): file_digest(p)
            for p in base.rglob("*")
            if p.is_file() and not _cached(p.relative_to(base).as_posix())
        }
    )


def files_digest(digests: Mapping[str, str]) -> str:
    """:func:`tree_digest` from each file's relative POSIX path and SHA-256 hex, for files
    that are not on disk as one folder (e.g. read one by one from a server).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "MLmodel").write_text("flavors: {}")
        >>> files_digest({"MLmodel": file_digest(folder / "MLmodel")}) == tree_digest(folder)
        True
    """
    return _lines_digest({path: d for path, d in digests.items() if not _cached(path)})


def _cached(path: str) -> bool:
    """Whether a relative path lies in Python's byte-code cache (left out of digests)."""
    return "__pycache__" in path.split("/")


def _lines_digest(digests: Mapping[str, str]) -> str:
    lines = sorted(f"{path} {digest}\n" for path, digest in digests.items())
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
