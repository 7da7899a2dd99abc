"""``/v1/webhooks`` (admin): subscriptions, their delivery log and replay."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from registry_server.deps import AuthorizeDep, CallerDep, ContextDep
from registry_server.schemas import (
    NO_NUL,
    DeliveryList,
    DeliveryOut,
    SecretIn,
    WebhookCreated,
    WebhookIn,
    WebhookList,
    error_responses,
)
from registry_server.services import audit, webhooks

Id = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL)]

router = APIRouter(
    dependencies=[AuthorizeDep],
    prefix="/v1/webhooks",
    tags=["webhooks"],
    responses=error_responses(401, 403, 404, 422),
)


@router.post("", status_code=201, response_model=WebhookCreated)
def create_webhook(body: WebhookIn, ctx: ContextDep, caller: CallerDep) -> dict:
    """Subscribe a URL to events; the signing secret is shown once, in this answer.

    The URL must not point at a loopback, private, link-local or metadata address (422
    ``webhook_target_refused``) unless the server allows them."""
    with ctx.db.session() as s:
        hook = webhooks.create(
            s, ctx, url=body.url, events=list(body.events), secret=body.secret, by=caller.user
        )
        payload = {"webhook_id": hook["id"], "url": hook["url"], "events": hook["events"]}
        audit.append(s, actor=caller.user, action="webhook_created", payload=payload, at=ctx.now())
    return hook


@router.get("", response_model=WebhookList)
def list_webhooks(ctx: ContextDep) -> dict:
    """Active subscriptions with their secrets' ids and expiries (values never shown again)."""
    with ctx.db.read_sessions() as s:
        return {"items": webhooks.list_webhooks(s, ctx)}


@router.post(
    "/{webhook_id}/secrets",
    status_code=201,
    response_model=WebhookCreated,
    responses=error_responses(409),
)
def add_secret(
    webhook_id: Id, ctx: ContextDep, caller: CallerDep, body: SecretIn | None = None
) -> dict:
    """Rotate: add a signing secret (shown once, in this answer). The current secrets keep
    signing beside it for ``overlap_seconds`` (default one day), then stop."""
    body = body or SecretIn()
    with ctx.db.session() as s:
        hook = webhooks.add_secret(
            s, ctx, webhook_id, secret=body.secret, overlap=body.overlap_seconds
        )
        payload = {"webhook_id": webhook_id, "secret_id": hook["secret_id"]}
        audit.append(
            s, actor=caller.user, action="webhook_secret_added", payload=payload, at=ctx.now()
        )
    return hook


@router.delete("/{webhook_id}/secrets/{secret_id}", status_code=204, responses=error_responses(409))
def drop_secret(webhook_id: Id, secret_id: Id, ctx: ContextDep, caller: CallerDep) -> None:
    """End a rotation now: stop signing with an old secret (the last one cannot go)."""
    with ctx.db.session() as s:
        webhooks.drop_secret(s, ctx, webhook_id, secret_id)
        payload = {"webhook_id": webhook_id, "secret_id": secret_id}
        audit.append(
            s, actor=caller.user, action="webhook_secret_dropped", payload=payload, at=ctx.now()
        )


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: Id, ctx: ContextDep, caller: CallerDep) -> None:
    """Unsubscribe; its pending deliveries are cancelled."""
    with ctx.db.session() as s:
        webhooks.delete(s, ctx, webhook_id)
        payload = {"webhook_id": webhook_id}
        audit.append(s, actor=caller.user, action="webhook_deleted", payload=payload, at=ctx.now())


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList)
def list_deliveries(webhook_id: Id, ctx: ContextDep) -> dict:
    """The delivery log of a webhook, newest first: state, attempts, last status."""
    with ctx.db.read_sessions() as s:
        return {"items": webhooks.deliveries(s, webhook_id)}


@router.post("/deliveries/{delivery_id}/replay", response_model=DeliveryOut)
def replay_delivery(delivery_id: Id, ctx: ContextDep) -> dict:
    """Send a delivery again now, with the same id (idempotency key) and body."""
    with ctx.db.session() as s:
        return webhooks.replay(s, ctx, delivery_id)


__all__ = ["router"]
