"""The application factory: nothing is built at import time.

Example:
    >>> from registry_server.app import create_app
    >>> from registry_server.settings import RegistrySettings
    >>> app = create_app(RegistrySettings(database_url="sqlite:///reg.db"))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from fastapi import FastAPI

from registry_server.settings import RegistrySettings, load_registry_settings

__all__ = ["create_app", "create_app_from_env", "reconcile_once"]

log = logging.getLogger("registry_server")


def create_app(
    settings: RegistrySettings | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    gateway: object | None = None,
) -> FastAPI:
    """Build the server: migrate the database, load the policy, wire the routers.

    ``clock`` (a function returning an aware ``datetime``) and ``gateway`` (an
    :class:`~registry_server.mlflow_gateway.MlflowGateway`) can be injected for tests.
    """
    from mlops.policy import load_policy
    from registry_server.db.engine import Database
    from registry_server.errors import install_error_handlers
    from registry_server.limits import BodySizeLimit
    from registry_server.mlflow_gateway import MlflowGateway
    from registry_server.routers import aliases, audit, health, promotions, tokens, webhooks
    from registry_server.secret_box import load_box
    from registry_server.services.aliases import AliasReader
    from registry_server.services.auth import ensure_token
    from registry_server.services.context import ServerContext

    settings = settings or load_registry_settings()
    _configure_logging(settings.log_level)
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    box = load_box(settings.database_url, secret_key)  # refuses to start without a key
    db = Database(settings.database_url)
    db.upgrade(secret_key=secret_key)
    if settings.admin_token:
        with db.session() as s:
            ensure_token(s, "admin", ["admin"], settings.admin_token)
    ctx = ServerContext(
        db=db,
        gateway=gateway or MlflowGateway(settings.tracking_uri, settings.registry_uri),
        policy=load_policy(settings.policy_path),
        intent_lease=settings.intent_lease,
        fault_point=settings.fault_point,
        secret_box=box,
        webhook_allow_private=settings.webhook_allow_private,
    )
    if clock is not None:
        ctx.clock = clock
    if settings.fault_point:
        log.warning(
            "TEST SETTING: fault point %s armed, the server will kill itself", ctx.fault_point
        )

    app = FastAPI(
        title="mlops registry server",
        version="1",
        description="Approval gates for model aliases: promotion requests, approvals, "
        "alias journal, hash-chained audit.",
        lifespan=_lifespan(settings),
    )
    app.state.ctx = ctx
    app.state.alias_reader = AliasReader(db)
    app.add_middleware(aliases.AliasFastPath, reader=app.state.alias_reader)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.state.settings = settings
    install_error_handlers(app)
    for module in (health, promotions, aliases, audit, tokens, webhooks):
        app.include_router(module.router)
    if settings.ui:
        from registry_server.web import mount

        mount(app, settings)
    return app


def _configure_logging(level: str) -> None:
    """Server messages (alias moves, retries, drift) at the uvicorn log level, to stderr."""
    logger = logging.getLogger("registry_server")
    if not logger.handlers:
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
        handler.setFormatter(logging.Formatter(fmt))
        logger.addHandler(handler)
    name = level.upper()
    logger.setLevel(name if name in logging.getLevelNamesMapping() else logging.INFO)


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory registry_server.app:create_app_from_env``."""
    return create_app(load_registry_settings())


def reconcile_once(ctx) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """One pass of the background work: finish alias moves, expire, restore aliases."""
    from registry_server.services.aliases import reconcile_protected
    from registry_server.services.outbox import apply_intents
    from registry_server.services.promotions import expire_due

    return {
        "applied": apply_intents(ctx),
        "expired": expire_due(ctx),
        "restored": reconcile_protected(ctx),
    }


def _lifespan(settings: RegistrySettings):  # type: ignore[no-untyped-def]
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = []
        if settings.reconcile_interval > 0:
            tasks.append(asyncio.create_task(_reconcile_loop(app, settings.reconcile_interval)))
        if settings.webhook_interval > 0:
            tasks.append(asyncio.create_task(_webhook_loop(app, settings)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            app.state.alias_reader.close()
            app.state.ctx.db.dispose()

    return lifespan


async def _reconcile_loop(app: FastAPI, interval: float) -> None:
    """First pass at start (recovery after a crash), then one every ``interval`` seconds."""
    from sqlalchemy.exc import SQLAlchemyError

    from mlops.errors import MlopsError

    while True:
        try:
            await asyncio.to_thread(reconcile_once, app.state.ctx)
        except (MlopsError, SQLAlchemyError) as exc:  # retried next pass, nothing is lost
            log.warning("reconcile pass failed: %s", exc)
        await asyncio.sleep(interval)


async def _webhook_loop(app: FastAPI, settings: RegistrySettings) -> None:
    """Deliver due webhook calls every ``webhook_interval`` seconds."""
    from sqlalchemy.exc import SQLAlchemyError

    from mlops.errors import MlopsError
    from registry_server.services.webhooks import dispatch_due

    while True:
        try:
            await asyncio.to_thread(
                dispatch_due,
                app.state.ctx,
                timeout=settings.webhook_timeout,
                max_attempts=settings.webhook_max_attempts,
                backoff=settings.webhook_backoff,
            )
        except (MlopsError, SQLAlchemyError) as exc:  # e.g. a wrong secret key: said each pass
            log.warning("webhook pass failed: %s", exc)
        await asyncio.sleep(settings.webhook_interval)
