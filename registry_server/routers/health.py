"""``/healthz`` (process up) and ``/readyz`` (database reachable, migrations at head)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from registry_server.deps import ContextDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(ctx: ContextDep) -> JSONResponse:
    """Ready when the database answers and its schema is at the newest migration."""
    head = ctx.db.head_revision()
    try:
        current = ctx.db.current_revision()
    except SQLAlchemyError as exc:
        body = {"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"}
        return JSONResponse(body, status_code=503)
    ok = current == head
    body = {"status": "ok" if ok else "unavailable", "revision": current, "head": head}
    return JSONResponse(body, status_code=200 if ok else 503)


__all__ = ["router"]
