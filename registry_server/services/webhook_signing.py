"""Webhook signatures per the Standard Webhooks specification (standardwebhooks.com).

A delivery carries ``webhook-id`` (the delivery id: the same on every retry and replay),
``webhook-timestamp`` (send time, unix seconds) and ``webhook-signature``: one
``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` per active secret, space-separated, so
a receiver holding either secret verifies during a rotation. Secrets are shown as
``whsec_<base64 key>``; receivers verify with the ``standardwebhooks`` library.

The ``X-Mlops-*`` headers of the previous release are still sent, deprecated:
``X-Mlops-Signature: sha256=<hex HMAC of the body>`` with the oldest active key.

Example:
    >>> key = parse_secret("whsec_" + "QUJD" * 8)
    >>> sign(key, "d1", 1700000000, b"{}")[:3]
    'v1,'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

__all__ = [
    "delivery_headers",
    "display_secret",
    "legacy_signature",
    "new_secret",
    "parse_secret",
    "sign",
]

PREFIX = "whsec_"
_KEY_BYTES = 32


def new_secret() -> bytes:
    """A fresh random signing key (32 bytes)."""
    return secrets.token_bytes(_KEY_BYTES)


def display_secret(key: bytes) -> str:
    """The ``whsec_<base64>`` form a receiver passes to ``standardwebhooks.Webhook``.

    Example:
        >>> display_secret(b"abc")
        'whsec_YWJj'
    """
    return PREFIX + base64.b64encode(key).decode("ascii")


def parse_secret(value: str) -> bytes:
    """The key in a secret given by an admin.

    ``whsec_<base64>`` (24 to 64 bytes) is decoded; any other text (the previous release's
    free-form secrets) is used as its UTF-8 bytes, so existing receivers keep their key.

    Example:
        >>> parse_secret("a-free-form-secret-of-some-length")[:6]
        b'a-free'
    """
    if not value.startswith(PREFIX):
        return value.encode("utf-8")
    try:
        key = base64.b64decode(value[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the secret {PREFIX}... is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"a {PREFIX} secret must hold 24 to 64 bytes, got {len(key)}")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "msg_id.timestamp.body">`` (Standard Webhooks)."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def legacy_signature(key: bytes, body: bytes) -> str:
    """Deprecated ``sha256=<hex HMAC of the body>`` (``X-Mlops-Signature``).

    Example:
        >>> legacy_signature(b"secret", b'{"event":"promoted"}')[:15]
        'sha256=f6933012'
    """
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def delivery_headers(
    keys: list[bytes], *, msg_id: str, event: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Every header of one delivery; ``keys`` are the active secrets, newest first.

    Example:
        >>> h = delivery_headers([b"k2", b"k1"], msg_id="d1", event="x", timestamp=1, body=b"{}")
        >>> len(h["webhook-signature"].split(" "))
        2
    """
    return {
        "Content-Type": "application/json",
        "User-Agent": "mlops-registry-webhooks/2",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(k, msg_id, timestamp, body) for k in keys),
        # deprecated: kept for one release, see docs/operations.md
        "X-Mlops-Delivery": msg_id,
        "X-Mlops-Event": event,
        "X-Mlops-Timestamp": str(timestamp),
        "X-Mlops-Signature": legacy_signature(keys[-1], body),
    }
