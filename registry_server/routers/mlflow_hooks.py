"""``POST /v1/mlflow/webhook``: MLflow's own alias events, signed with the shared secret.

No bearer token (MLflow cannot send one): the HMAC signature is the authentication, and a
valid event only makes the server check that model's protected aliases against its own
journal. Without ``MLOPS_REGISTRY_MLFLOW_WEBHOOK_SECRET`` the route answers 404.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from mlops.errors import AuthenticationError, NotFoundError
from registry_server.deps import AuthorizeDep, ContextDep
from registry_server.schemas import error_responses
from registry_server.services import mlflow_events
from registry_server.services.drift import check_model

router = APIRouter(
    dependencies=[AuthorizeDep],
    prefix="/v1/mlflow",
    tags=["mlflow"],
    responses=error_responses(401, 404, 503),
)


@router.post("/webhook")
async def mlflow_webhook(request: Request, ctx: ContextDep) -> dict:
    """Check the protected aliases of the model an MLflow alias event names."""
    settings = request.app.state.settings
    secret = settings.mlflow_webhook_secret
    if not secret:
        raise NotFoundError(
            "MLflow webhooks are not enabled on this server.",
            hint="Set MLOPS_REGISTRY_MLFLOW_WEBHOOK_SECRET and MLOPS_REGISTRY_MLFLOW_WEBHOOK_URL.",
        )
    body = await request.body()
    try:
        mlflow_events.verify(
            secret,
            request.headers,
            body,
            now=time.time(),
            tolerance=settings.mlflow_webhook_tolerance,
        )
    except AuthenticationError as exc:  # ignored: the sweep still repairs whatever it was
        mlflow_events.log.warning("refused an MLflow webhook from %s: %s", request.client, exc)
        raise
    name = mlflow_events.alias_event_model(body)
    if name is None:
        return {"model": None, "repaired": 0}
    repaired = await run_in_threadpool(check_model, ctx, name)
    return {"model": name, "repaired": repaired}


__all__ = ["router"]
