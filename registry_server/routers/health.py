"""``/healthz`` (process up) and ``/readyz`` (able to do its work).

Ready means: the database answers and its schema is at the newest migration, MLflow's
client is loaded and usable in this process, and no background loop has died. The body
also shows each loop's state, the MLflow webhook subscription and the aliases waiting for a
person (``attention``): details, not reasons to be unready.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from registry_server.deps import ContextDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(ctx: ContextDep, request: Request) -> JSONResponse:
    """Ready when the database, the schema, MLflow's client and every loop are fine."""
    from registry_server.services.drift import attention_list

    head = ctx.db.head_revision()
    try:
        current = ctx.db.current_revision()
        attention = attention_list(ctx)
    except SQLAlchemyError as exc:
        body = {"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"}
        return JSONResponse(body, status_code=503)
    mlflow = ctx.gateway.usable()
    loops = {name: h.report() for name, h in getattr(request.app.state, "loops", {}).items()}
    ok = current == head and mlflow == "ok" and all(loop["alive"] for loop in loops.values())
    body = {
        "status": "ok" if ok else "unavailable",
        "revision": current,
        "head": head,
        "mlflow": mlflow,
        "loops": loops,
        "mlflow_webhook": getattr(request.app.state, "mlflow_webhook", None),
        "attention": attention,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


__all__ = ["router"]
