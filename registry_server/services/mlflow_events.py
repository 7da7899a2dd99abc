"""MLflow's own webhooks: subscribe to alias events, verify what arrives, check the model.

MLflow 3 (``mlflow server`` on a database store) POSTs ``model_version_alias.created`` and
``.deleted`` events, signed the Standard Webhooks way: ``X-MLflow-Signature`` is
``v1,<base64 HMAC-SHA256(secret, "<delivery id>.<timestamp>.<body>")>`` with the id and
unix timestamp in ``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp``. A delivery is
trusted only with a valid signature and a timestamp within the tolerance; it then only
triggers a check of the model it names (:func:`registry_server.services.drift.check_model`),
which reads MLflow and the journal itself: the body is never taken as the truth.

Example:
    >>> sig = sign("s" * 16, "d1", "1700000000", '{"a": 1}')
    >>> sig.startswith("v1,")
    True
    >>> verify("s" * 16, {"x-mlflow-signature": sig, "x-mlflow-delivery-id": "d1",
    ...        "x-mlflow-timestamp": "1700000000"}, b'{"a": 1}', now=1700000001.0)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlops.errors import AuthenticationError, ConflictError

if TYPE_CHECKING:
    from registry_server.services.context import ServerContext

__all__ = ["WEBHOOK_NAME", "alias_event_model", "ensure_subscription", "sign", "verify"]

log = logging.getLogger("registry_server.drift")

#: the name of the server's subscription in MLflow (one per registry server URL)
WEBHOOK_NAME = "mlops-registry-alias-drift"


def sign(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends for this delivery."""
    content = f"{delivery_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _refuse(why: str) -> AuthenticationError:
    return AuthenticationError(
        f"MLflow webhook refused: {why}.",
        hint="Give MLflow's webhook the same secret as MLOPS_REGISTRY_MLFLOW_WEBHOOK_SECRET "
        "(the server sets it when it subscribes at start).",
    )


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float, tolerance: float = 300
) -> None:
    """Raise :class:`~mlops.errors.AuthenticationError` unless MLflow signed this delivery.

    ``headers`` are looked up in lower case (Starlette's headers are case-insensitive).
    """
    signature = headers.get("x-mlflow-signature") or ""
    delivery_id = headers.get("x-mlflow-delivery-id") or ""
    stamp = headers.get("x-mlflow-timestamp") or ""
    if not signature or not delivery_id or not stamp:
        raise _refuse("X-MLflow-Signature, -Delivery-Id or -Timestamp header missing")
    try:
        when = float(stamp)
        text = body.decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise _refuse(f"unreadable timestamp {stamp[:40]!r} or body") from exc
    if abs(now - when) > tolerance:
        raise _refuse(f"timestamp {stamp[:40]!r} is more than {tolerance:g}s from now (replay?)")
    expected = sign(secret, delivery_id, stamp, text)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise _refuse("the signature does not match the body")


def alias_event_model(body: bytes) -> str | None:
    """The registered model an alias event names; ``None`` for any other event."""
    try:
        event: Any = json.loads(body)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("entity") != "model_version_alias":
        return None
    data = event.get("data")
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def ensure_subscription(ctx: ServerContext, *, url: str, secret: str) -> str:
    """Subscribe ``url`` to MLflow's alias events (once, whatever the number of workers).

    Runs under the server's database lock for the subscription, so workers starting
    together update one webhook instead of creating one each. Returns MLflow's webhook id.
    """
    from registry_server.services._rows import lock_target

    if not ctx.gateway.tracking_uri.startswith(("http://", "https://")):
        raise ConflictError(
            f"MLflow at {ctx.gateway.tracking_uri} is an embedded store: it sends no webhooks.",
            hint="Unset MLOPS_REGISTRY_MLFLOW_WEBHOOK_URL, or point the server at an "
            "`mlflow server` (MLOPS_REGISTRY_TRACKING_URI=http://...).",
        )
    with ctx.db.session() as s:
        lock_target(s, WEBHOOK_NAME, url)
        hook_id = ctx.gateway.ensure_alias_webhook(name=WEBHOOK_NAME, url=url, secret=secret)
    log.info("subscribed %s to MLflow alias events (webhook %s)", url, hook_id)
    return hook_id
