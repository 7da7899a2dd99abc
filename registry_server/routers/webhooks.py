"""``/v1/webhooks`` (admin): subscriptions, their delivery log and replay."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from registry_server.deps import AuthorizeDep, CallerDep, ContextDep
from registry_server.schemas import (
    NO_NUL,
    DeliveryList,
    DeliveryOut,
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
    """Subscribe a URL to events; the signing secret is shown once, in this answer."""
    with ctx.db.session() as s:
        hook = webhooks.create(
            s, ctx, url=body.url, events=list(body.events), secret=body.secret, by=caller.user
        )
        payload = {"webhook_id": hook["id"], "url": hook["url"], "events": hook["events"]}
        audit.append(s, actor=caller.user, action="webhook_created", payload=payload, at=ctx.now())
    return hook


@router.get("", response_model=WebhookList)
def list_webhooks(ctx: ContextDep) -> dict:
    """Active subscriptions (secrets never shown again)."""
    with ctx.db.read_sessions() as s:
        return {"items": webhooks.list_webhooks(s)}


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
