"""Webhooks: subscriptions, deliveries written with the event, a retrying signed dispatcher.

Every audit event is offered to the active subscriptions in the transaction that appends
it (:func:`enqueue`, called by :func:`registry_server.services.audit.append`), so a state
change and its deliveries commit or vanish together. :func:`dispatch_due` POSTs due
deliveries: body = the event as JSON, ``X-Mlops-Signature: sha256=<hmac hex of the body>``,
``X-Mlops-Timestamp`` (send time, unix seconds), ``X-Mlops-Delivery`` (the delivery id:
the same on every retry and replay, so receivers can drop duplicates) and
``X-Mlops-Event``. Any non-2xx answer or network error is retried with exponential
back-off; delivery is at least once.

Example:
    >>> signature(b"secret", b'{"event":"promoted"}')[:15]
    'sha256=f6933012'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mlops.errors import NotFoundError
from registry_server.db.models import Webhook, WebhookDelivery
from registry_server.services.context import utc

if TYPE_CHECKING:
    from registry_server.db.models import AuditEvent
    from registry_server.services.context import ServerContext

__all__ = [
    "create",
    "delete",
    "deliveries",
    "dispatch_due",
    "enqueue",
    "list_webhooks",
    "replay",
    "signature",
]

_LEASE = 60.0
_MAX_BACKOFF = 600.0


def signature(secret: bytes, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``body`` with ``secret`` (what receivers recompute)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def create(
    s: Session, ctx: ServerContext, *, url: str, events: list[str], secret: str | None, by: str
) -> dict[str, Any]:
    """Subscribe ``url`` to ``events`` (``["*"]``: all); the secret is shown only here.

    Example:
        >>> with ctx.db.session() as s:                                  # doctest: +SKIP
        ...     create(s, ctx, url="https://ci/hook", events=["promoted"], secret=None, by="root")
    """
    row = Webhook(
        id=uuid.uuid4().hex,
        url=url,
        events=sorted(set(events)),
        secret=secret or secrets.token_urlsafe(32),
        created_by=by,
        created_at=ctx.now(),
    )
    s.add(row)
    s.flush()
    return {**_view(row), "secret": row.secret}


def _view(row: Webhook) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "events": list(row.events),
        "created_by": row.created_by,
        "created_at": utc(row.created_at).isoformat(),
    }


def list_webhooks(s: Session) -> list[dict[str, Any]]:
    """Active subscriptions, without their secrets."""
    stmt = select(Webhook).where(Webhook.deleted_at.is_(None)).order_by(Webhook.created_at)
    return [_view(r) for r in s.scalars(stmt)]


def _get(s: Session, webhook_id: str) -> Webhook:
    row = s.get(Webhook, webhook_id)
    if row is None or row.deleted_at is not None:
        raise NotFoundError(
            f"No webhook with id {webhook_id!r}.", hint="List them: GET /v1/webhooks."
        )
    return row


def delete(s: Session, ctx: ServerContext, webhook_id: str) -> None:
    """Unsubscribe; pending deliveries of the webhook are dropped (state ``cancelled``)."""
    row = _get(s, webhook_id)
    row.deleted_at = ctx.now()
    s.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.state == "pending")
        .values(state="cancelled")
    )


def enqueue(s: Session, event: AuditEvent) -> int:
    """Queue ``event`` for every subscription that wants it, in the caller's transaction.

    Example:
        >>> enqueue(session, audit_row)  # number of deliveries queued  # doctest: +SKIP
        1
    """
    hooks = [
        h
        for h in s.scalars(select(Webhook).where(Webhook.deleted_at.is_(None)))
        if "*" in h.events or event.action in h.events
    ]
    for hook in hooks:
        delivery_id = uuid.uuid4().hex
        body = {
            "delivery": delivery_id,
            "event": event.action,
            "audit_id": event.id,
            "at": event.at,
            "actor": event.actor,
            "payload": json.loads(event.payload),
        }
        s.add(
            WebhookDelivery(
                id=delivery_id,
                webhook_id=hook.id,
                event=event.action,
                audit_id=event.id,
                body=json.dumps(body, sort_keys=True, separators=(",", ":")),
                state="pending",
                attempts=0,
                next_attempt_at=_utc_from(event.at),
                created_at=_utc_from(event.at),
            )
        )
    return len(hooks)


def _utc_from(iso: str) -> datetime:
    """An aware datetime from the ISO text stored in audit events."""
    return utc(datetime.fromisoformat(iso))


def deliveries(s: Session, webhook_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The delivery log of one webhook, newest first."""
    _get(s, webhook_id)
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.audit_id.desc())
        .limit(limit)
    )
    return [delivery_view(d) for d in s.scalars(stmt)]


def delivery_view(d: WebhookDelivery) -> dict[str, Any]:
    """Wire form of a delivery."""
    return {
        "id": d.id,
        "webhook_id": d.webhook_id,
        "event": d.event,
        "audit_id": d.audit_id,
        "state": d.state,
        "attempts": d.attempts,
        "next_attempt_at": utc(d.next_attempt_at).isoformat(),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": utc(d.created_at).isoformat(),
        "delivered_at": utc(d.delivered_at).isoformat() if d.delivered_at else None,
    }


def replay(s: Session, ctx: ServerContext, delivery_id: str) -> dict[str, Any]:
    """Send a delivery again (same id and body); it goes back to ``pending`` now.

    Example:
        >>> replay(session, ctx, "3f2a...")["state"]  # doctest: +SKIP
        'pending'
    """
    d = s.get(WebhookDelivery, delivery_id)
    if d is None:
        raise NotFoundError(
            f"No webhook delivery with id {delivery_id!r}.",
            hint="See GET /v1/webhooks/{id}/deliveries.",
        )
    _get(s, d.webhook_id)
    d.state, d.next_attempt_at, d.last_error = "pending", ctx.now(), None
    s.flush()
    return delivery_view(d)


# --- the dispatcher ----------------------------------------------------------------------
def dispatch_due(
    ctx: ServerContext,
    *,
    timeout: float = 10.0,
    max_attempts: int = 12,
    backoff: float = 1.0,
    limit: int = 50,
) -> int:
    """POST every due pending delivery once; the number delivered now.

    After the n-th failed attempt the delivery waits ``backoff * 2**(n-1)`` seconds
    (at most 10 minutes); after ``max_attempts`` it is ``failed`` (replay sends it again).
    """
    import httpx

    with ctx.db.read_sessions() as s:
        stmt = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.state == "pending",
                WebhookDelivery.next_attempt_at <= ctx.now(),
            )
            .order_by(WebhookDelivery.created_at, WebhookDelivery.audit_id)
            .limit(limit)
        )
        ids = list(s.scalars(stmt))
    delivered = 0
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for delivery_id in ids:
            claimed = _claim(ctx, delivery_id)
            if claimed is not None:
                delivered += _send(ctx, client, claimed, limits=(max_attempts, backoff))
    return delivered


def _claim(ctx: ServerContext, delivery_id: str) -> tuple[str, str, bytes, str, int] | None:
    with ctx.db.session() as s:
        now = ctx.now()
        claimed = s.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.state == "pending",
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(
                next_attempt_at=now + timedelta(seconds=_LEASE),
                attempts=WebhookDelivery.attempts + 1,
            )
        )
        if claimed.rowcount != 1:
            return None
        d = s.get(WebhookDelivery, delivery_id)
        hook = s.get(Webhook, d.webhook_id)
        return d.id, hook.url, hook.secret.encode(), d.body, d.attempts


def _send(ctx: ServerContext, client: Any, claimed: tuple, *, limits: tuple[int, float]) -> bool:
    import httpx

    delivery_id, url, secret, body, attempts = claimed
    data = body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "mlops-registry-webhooks/1",
        "X-Mlops-Delivery": delivery_id,
        "X-Mlops-Event": json.loads(body)["event"],
        "X-Mlops-Timestamp": str(int(time.time())),
        "X-Mlops-Signature": signature(secret, data),
    }
    status, error = None, None
    try:
        response = client.post(url, content=data, headers=headers)
        status = response.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status} from {url}"
    except (httpx.HTTPError, httpx.InvalidURL, OSError, UnicodeError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
    _record(ctx, delivery_id, status, error, attempts, limits)
    return error is None


def _record(
    ctx: ServerContext,
    delivery_id: str,
    status: int | None,
    error: str | None,
    attempts: int,
    limits: tuple[int, float],
) -> None:
    max_attempts, backoff = limits
    with ctx.db.session() as s:
        d = s.get(WebhookDelivery, delivery_id)
        d.last_status, d.last_error = status, error
        if error is None:
            d.state, d.delivered_at = "delivered", ctx.now()
        elif attempts >= max_attempts:
            d.state = "failed"
        else:
            delay = min(backoff * 2.0 ** (attempts - 1), _MAX_BACKOFF)
            d.next_attempt_at = ctx.now() + timedelta(seconds=delay)
