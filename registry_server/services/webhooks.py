"""Webhooks: subscriptions, deliveries written with the event, a retrying signed dispatcher.

Every audit event is offered to the active subscriptions in the transaction that appends
it (:func:`enqueue`, called by :func:`registry_server.services.audit.append`), so a state
change and its deliveries commit or vanish together. :func:`dispatch_due` POSTs due
deliveries, body = the event as JSON, signed per the Standard Webhooks specification
(:mod:`registry_server.services.webhook_signing`): ``webhook-id`` is the delivery id (the
same on every retry and replay, so receivers can drop duplicates), ``webhook-timestamp``
the send time, ``webhook-signature`` one signature per active secret. Any non-2xx answer
or network error is retried with exponential back-off; delivery is at least once.

Secrets are stored encrypted (:mod:`registry_server.secret_box`) and shown once. Rotation:
:func:`add_secret` adds a key and gives the current ones an expiry (the overlap), during
which every delivery is signed with each; :func:`drop_secret` ends an old one at once.
Targets must be public addresses (:mod:`registry_server.services.webhook_targets`).

Example:
    >>> from registry_server.services.webhook_signing import legacy_signature
    >>> legacy_signature(b"secret", b'{"event":"promoted"}')[:15]
    'sha256=f6933012'
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from socket import getaddrinfo
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mlops.errors import ConflictError, NotFoundError
from registry_server.db.models import Webhook, WebhookDelivery, WebhookSecret
from registry_server.services.context import utc
from registry_server.services.webhook_signing import (
    delivery_headers,
    display_secret,
    new_secret,
    parse_secret,
)
from registry_server.services.webhook_targets import (
    GuardedTransport,
    Resolver,
    WebhookTargetRefused,
    check_url,
)

if TYPE_CHECKING:
    from registry_server.db.models import AuditEvent
    from registry_server.secret_box import SecretBox
    from registry_server.services.context import ServerContext

__all__ = [
    "add_secret",
    "create",
    "delete",
    "deliveries",
    "dispatch_due",
    "drop_secret",
    "enqueue",
    "enqueue_event",
    "list_webhooks",
    "replay",
]

_LEASE = 60.0
_MAX_BACKOFF = 600.0


def _box(ctx: ServerContext) -> SecretBox:
    if ctx.secret_box is None:
        from registry_server.secret_box import load_box

        ctx.secret_box = load_box(ctx.db.url)
    return ctx.secret_box


def create(
    s: Session, ctx: ServerContext, *, url: str, events: list[str], secret: str | None, by: str
) -> dict[str, Any]:
    """Subscribe ``url`` to ``events`` (``["*"]``: all); the secret is shown only here.

    Raises :class:`WebhookTargetRefused` for a loopback, private, link-local or metadata
    target unless the server allows them.

    Example:
        >>> with ctx.db.session() as s:                                  # doctest: +SKIP
        ...     create(s, ctx, url="https://ci/hook", events=["promoted"], secret=None, by="root")
    """
    if not ctx.webhook_allow_private:
        check_url(url)
    row = Webhook(
        id=uuid.uuid4().hex,
        url=url,
        events=sorted(set(events)),
        created_by=by,
        created_at=ctx.now(),
    )
    s.add(row)
    s.flush()
    return _add_key(s, ctx, row, secret)


def _add_key(s: Session, ctx: ServerContext, hook: Webhook, secret: str | None) -> dict[str, Any]:
    key = parse_secret(secret) if secret else new_secret()
    row = WebhookSecret(
        id=uuid.uuid4().hex,
        webhook_id=hook.id,
        ciphertext=_box(ctx).seal(key),
        created_at=ctx.now(),
        expires_at=None,
    )
    s.add(row)
    s.flush()
    return {**_view(s, ctx, hook), "secret": display_secret(key), "secret_id": row.id}


def _active(s: Session, ctx: ServerContext, webhook_id: str) -> list[WebhookSecret]:
    """The secrets that sign now, newest first."""
    now = ctx.now()
    rows = s.scalars(
        select(WebhookSecret)
        .where(WebhookSecret.webhook_id == webhook_id)
        .order_by(WebhookSecret.created_at.desc(), WebhookSecret.id)
    )
    return [r for r in rows if r.expires_at is None or utc(r.expires_at) > now]


def add_secret(
    s: Session, ctx: ServerContext, webhook_id: str, *, secret: str | None, overlap: float
) -> dict[str, Any]:
    """Rotate: add a secret (shown once); the current ones keep signing for ``overlap``
    seconds more, then stop (0: at once). Expired secrets are deleted.

    Example:
        >>> add_secret(s, ctx, hook_id, secret=None, overlap=86400)["secret"][:6]  # doctest: +SKIP
        'whsec_'
    """
    hook = _get(s, webhook_id)
    until = ctx.now() + timedelta(seconds=overlap)
    for row in _active(s, ctx, webhook_id):
        if row.expires_at is None or utc(row.expires_at) > until:
            row.expires_at = until
    _purge(s, ctx, webhook_id)
    return _add_key(s, ctx, hook, secret)


def drop_secret(s: Session, ctx: ServerContext, webhook_id: str, secret_id: str) -> None:
    """Stop signing with one secret now (the end of a rotation); the last one stays.

    Example:
        >>> drop_secret(s, ctx, hook_id, old_secret_id)  # doctest: +SKIP
    """
    _get(s, webhook_id)
    active = _active(s, ctx, webhook_id)
    row = next((r for r in active if r.id == secret_id), None)
    if row is None:
        raise NotFoundError(
            f"Webhook {webhook_id!r} has no active secret {secret_id!r}.",
            hint=f"See its secrets in GET /v1/webhooks (webhook {webhook_id}).",
        )
    if len(active) == 1:
        raise ConflictError(
            f"Secret {secret_id!r} is the only active secret of webhook {webhook_id!r}.",
            hint=f"Add a new one first: POST /v1/webhooks/{webhook_id}/secrets.",
        )
    s.delete(row)
    _purge(s, ctx, webhook_id)


def _purge(s: Session, ctx: ServerContext, webhook_id: str) -> None:
    s.execute(
        sql_delete(WebhookSecret).where(
            WebhookSecret.webhook_id == webhook_id, WebhookSecret.expires_at <= ctx.now()
        ),
        execution_options={"synchronize_session": False},
    )


def _view(s: Session, ctx: ServerContext, row: Webhook) -> dict[str, Any]:
    secrets = [
        {
            "id": k.id,
            "created_at": utc(k.created_at).isoformat(),
            "expires_at": utc(k.expires_at).isoformat() if k.expires_at else None,
        }
        for k in _active(s, ctx, row.id)
    ]
    return {
        "id": row.id,
        "url": row.url,
        "events": list(row.events),
        "created_by": row.created_by,
        "created_at": utc(row.created_at).isoformat(),
        "secrets": secrets,
    }


def list_webhooks(s: Session, ctx: ServerContext) -> list[dict[str, Any]]:
    """Active subscriptions with their active secrets' ids and expiries (never values)."""
    stmt = select(Webhook).where(Webhook.deleted_at.is_(None)).order_by(Webhook.created_at)
    return [_view(s, ctx, r) for r in s.scalars(stmt)]


def _get(s: Session, webhook_id: str) -> Webhook:
    row = s.get(Webhook, webhook_id)
    if row is None or row.deleted_at is not None:
        raise NotFoundError(
            f"No webhook with id {webhook_id!r}.", hint="List them: GET /v1/webhooks."
        )
    return row


def delete(s: Session, ctx: ServerContext, webhook_id: str) -> None:
    """Unsubscribe; pending deliveries of the webhook are dropped (state ``cancelled``)
    and its secrets deleted."""
    row = _get(s, webhook_id)
    row.deleted_at = ctx.now()
    s.execute(sql_delete(WebhookSecret).where(WebhookSecret.webhook_id == webhook_id))
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
    return enqueue_event(
        s,
        event=event.action,
        audit_id=event.id,
        at=event.at,
        actor=event.actor,
        payload=json.loads(event.payload),
    )


def enqueue_event(
    s: Session, *, event: str, audit_id: int, at: str, actor: str, payload: dict[str, Any]
) -> int:
    """Queue one event (an audit event, or a signed ``audit_checkpoint``) for every
    subscription that wants it; the number of deliveries queued."""
    hooks = [
        h
        for h in s.scalars(select(Webhook).where(Webhook.deleted_at.is_(None)))
        if "*" in h.events or event in h.events
    ]
    for hook in hooks:
        delivery_id = uuid.uuid4().hex
        body = {
            "delivery": delivery_id,
            "event": event,
            "audit_id": audit_id,
            "at": at,
            "actor": actor,
            "payload": payload,
        }
        s.add(
            WebhookDelivery(
                id=delivery_id,
                webhook_id=hook.id,
                event=event,
                audit_id=audit_id,
                body=json.dumps(body, sort_keys=True, separators=(",", ":")),
                state="pending",
                attempts=0,
                next_attempt_at=_utc_from(at),
                created_at=_utc_from(at),
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
    allow_private: bool | None = None,
    resolve: Resolver | None = None,
) -> int:
    """POST every due pending delivery once; the number delivered now.

    After the n-th failed attempt the delivery waits ``backoff * 2**(n-1)`` seconds
    (at most 10 minutes); after ``max_attempts`` it is ``failed`` (replay sends it again).
    Every connection goes through :class:`GuardedTransport`, which refuses non-public
    addresses unless ``allow_private`` (default: the server's setting); ``resolve``
    replaces ``socket.getaddrinfo`` there.
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
    allow = ctx.webhook_allow_private if allow_private is None else allow_private
    transport = GuardedTransport(resolve=resolve or getaddrinfo, allow_private=allow)
    with httpx.Client(timeout=timeout, follow_redirects=False, transport=transport) as client:
        for delivery_id in ids:
            claimed = _claim(ctx, delivery_id)
            if claimed is not None:
                delivered += _send(ctx, client, claimed, limits=(max_attempts, backoff))
    return delivered


def _claim(ctx: ServerContext, delivery_id: str) -> tuple[str, str, list[bytes], str, int] | None:
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
        keys = [_box(ctx).open(k.ciphertext) for k in _active(s, ctx, hook.id)]
        if not keys:  # unsubscribed meanwhile: its delivery is cancelled, nothing to sign
            return None
        return d.id, hook.url, keys, d.body, d.attempts


def _send(ctx: ServerContext, client: Any, claimed: tuple, *, limits: tuple[int, float]) -> bool:
    import httpx

    delivery_id, url, keys, body, attempts = claimed
    data = body.encode()
    headers = delivery_headers(
        keys,
        msg_id=delivery_id,
        event=json.loads(body)["event"],
        timestamp=int(ctx.now().timestamp()),
        body=data,
    )
    status, error = None, None
    try:
        response = client.post(url, content=data, headers=headers)
        status = response.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status} from {url}"
    except WebhookTargetRefused as exc:  # never contacted: open and closed ports look alike
        error = f"Refused: {exc.message}"
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
