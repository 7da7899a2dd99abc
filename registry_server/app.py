"""The application factory: nothing is built at import time.

Example:
    >>> from registry_server.app import create_app
    >>> from registry_server.settings import RegistrySettings
    >>> app = create_app(RegistrySettings(database_url="sqlite:///reg.db"))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
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
    from registry_server.openapi import describe_policy
    from registry_server.routers import (
        aliases,
        audit,
        health,
        keys,
        lineage,
        mlflow_hooks,
        policy,
        promotions,
        tokens,
        webhooks,
    )
    from registry_server.secret_box import load_box
    from registry_server.services.aliases import AliasReader
    from registry_server.services.audit import AFTER_APPEND
    from registry_server.services.auth import ensure_token
    from registry_server.services.checkpoints import after_append_hook
    from registry_server.services.context import ServerContext
    from registry_server.services.policies import start as start_policy
    from registry_server.signing import load_signing_key

    settings = settings or load_registry_settings()
    _configure_logging(settings.log_level)
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    box = load_box(settings.database_url, secret_key)  # refuses to start without a key
    signing_key = load_signing_key(
        settings.database_url,
        pem=settings.signing_key.get_secret_value() if settings.signing_key else None,
        path=settings.signing_key_file,
    )  # refuses to start without one on PostgreSQL
    db = Database(settings.database_url, pool_size=settings.db_pool_size)
    db.upgrade(secret_key=secret_key)
    db.sessions.configure(
        info={AFTER_APPEND: after_append_hook(signing_key, settings.checkpoint_every)}
    )
    if settings.admin_token:
        with db.session() as s:
            ensure_token(s, "admin", ["admin"], settings.admin_token)
    ctx = ServerContext(
        db=db,
        gateway=gateway or MlflowGateway(settings.tracking_uri, settings.registry_uri),
        policy=load_policy(settings.policy_path),
        intent_lease=settings.intent_lease,
        retry_backoff=settings.retry_backoff,
        retry_backoff_max=settings.retry_backoff_max,
        drift_page_size=settings.drift_page_size,
        governed_models=settings.governed_models,
        fault_point=settings.fault_point,
        secret_box=box,
        webhook_allow_private=settings.webhook_allow_private,
        dvc_remote_url=settings.dvc_remote_url,
        dvc_remote_config=(
            {"endpointurl": settings.dvc_remote_endpoint_url}
            if settings.dvc_remote_endpoint_url
            else {}
        ),
        verify_lease=settings.verify_lease,
        verify_tolerance=settings.verify_tolerance,
        verify_max_attempts=settings.verify_max_attempts,
        signing_key=signing_key,
    )
    if clock is not None:
        ctx.clock = clock
    start_policy(ctx, settings.policy_path)  # kept by digest; reloaded when the file changes
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
    app.state.read_threads = settings.read_threads
    app.state.alias_reader = AliasReader(db)
    app.add_middleware(aliases.AliasFastPath, reader=app.state.alias_reader)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.state.settings = settings
    install_error_handlers(app)
    app.state.loops = {}
    app.state.mlflow_webhook = {"subscribed": False, "error": None}
    routers = (health, promotions, aliases, lineage, audit, tokens, webhooks, mlflow_hooks)
    for module in (*routers, policy, keys):
        app.include_router(module.router)
    describe_policy(app)
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
    """One pass of the background work: finish alias moves, expire, repair alias drift.

    Each step runs even if an earlier one failed; the first failure is raised at the end.
    """
    from registry_server.services.attestations import attach_pending
    from registry_server.services.drift import reconcile_protected
    from registry_server.services.outbox import apply_intents
    from registry_server.services.promotions import expire_due, release_soaked

    steps = {
        "soaked": release_soaked,
        "applied": apply_intents,
        "attested": attach_pending,
        "expired": expire_due,
        "restored": reconcile_protected,
    }
    out, failed = {}, None
    for name, step in steps.items():
        try:
            out[name] = step(ctx)
        except Exception as exc:  # the other steps still run; the loop logs and backs off
            out[name] = 0
            failed = failed or exc
    if failed is not None:
        raise failed
    return out


def _lifespan(settings: RegistrySettings):  # type: ignore[no-untyped-def]
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from registry_server.loops import LoopHealth, run_loop

        # MLflow is imported and its store opened here, once, before the server answers
        # anything: request threads and the loops must never race through its first import
        try:
            await asyncio.to_thread(app.state.ctx.gateway.preload)
        except Exception:
            log.exception("MLflow could not be loaded; /readyz reports it")
        _freeze_startup_heap()
        wanted = (
            ("reconcile", settings.reconcile_interval, _reconcile_work),
            ("policy", settings.policy_poll_interval, _policy_work),
            ("webhooks", settings.webhook_interval, _webhook_work),
            ("verifier", settings.verify_interval, _verify_work),
        )
        loops = [
            (LoopHealth(name, every, max_delay=settings.retry_backoff_max), make(app))
            for name, every, make in wanted
            if every > 0
        ]
        for health, work in loops:
            health.task = asyncio.create_task(run_loop(health, work))
            app.state.loops[health.name] = health
        try:
            yield
        finally:
            for health, _ in loops:
                health.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await health.task
            app.state.alias_reader.close()
            app.state.ctx.db.dispose()

    return lifespan


_frozen = False


def _freeze_startup_heap() -> None:
    """Once per process: what is loaded by the first start (FastAPI, SQLAlchemy, MLflow:
    some 300k objects) lives as long as the process; out of the collector's way, a full
    collection no longer scans it (it took ~100 ms, stalling every request of the worker,
    every few hundred pages). Not again: a process that starts apps one after another (the
    tests) would otherwise pin each one's garbage for good."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


def _reconcile_work(app: FastAPI) -> Callable[[], dict[str, int]]:
    """The first pass at start recovers after a crash; each pass (re)subscribes to MLflow's
    alias webhooks until that succeeds."""
    settings: RegistrySettings = app.state.settings

    def work() -> dict[str, int]:
        if settings.mlflow_webhook_url and settings.mlflow_webhook_secret:
            _subscribe(app, settings)
        return reconcile_once(app.state.ctx)

    return work


def _subscribe(app: FastAPI, settings: RegistrySettings) -> None:
    from mlops.errors import MlopsError
    from registry_server.services.mlflow_events import ensure_subscription

    state = app.state.mlflow_webhook
    if state["subscribed"]:
        return
    try:
        state["id"] = ensure_subscription(
            app.state.ctx, url=settings.mlflow_webhook_url, secret=settings.mlflow_webhook_secret
        )
    except MlopsError as exc:
        state["error"] = str(exc)
        log.warning("subscribing to MLflow alias webhooks failed (retried): %s", exc)
        return
    state["subscribed"], state["error"] = True, None


def _verify_work(app: FastAPI) -> Callable[[], int]:
    """Re-derive the evidence of requests in ``verifying`` (a pass resumes any left over)."""
    from registry_server.services.verifier import verify_due

    return lambda: verify_due(app.state.ctx)


def _policy_work(app: FastAPI) -> Callable[[], object]:
    from registry_server.services.policies import poll

    return lambda: poll(app.state.ctx)


def _webhook_work(app: FastAPI) -> Callable[[], object]:
    from registry_server.services.webhooks import dispatch_due

    settings: RegistrySettings = app.state.settings

    def work() -> object:
        return dispatch_due(
            app.state.ctx,
            timeout=settings.webhook_timeout,
            max_attempts=settings.webhook_max_attempts,
            backoff=settings.webhook_backoff,
        )

    return work
