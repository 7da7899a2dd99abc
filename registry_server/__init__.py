"""The mlops registry server: approval gates in front of MLflow model aliases.

Example:
    >>> import registry_server
    >>> registry_server.run()  # serves on 127.0.0.1:8765  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from registry_server.settings import RegistrySettings

__all__ = ["create_app", "run"]


def create_app(settings: RegistrySettings | None = None, **kwargs: Any) -> FastAPI:
    """Build the FastAPI app (see :func:`registry_server.app.create_app`)."""
    from registry_server.app import create_app as _create_app

    return _create_app(settings, **kwargs)


def run(settings: RegistrySettings | None = None) -> None:
    """Serve with uvicorn; several workers use the import-string factory.

    Example:
        >>> run(RegistrySettings(port=8765, workers=2))  # doctest: +SKIP
    """
    import os

    import uvicorn

    from registry_server.settings import load_registry_settings

    settings = settings or load_registry_settings()
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": settings.log_level in {"debug", "trace", "info"},
    }
    if settings.workers > 1:
        # workers rebuild the app from the environment: pass the settings through it
        from pydantic import SecretStr

        for key, value in settings.model_dump(exclude_none=True).items():
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            os.environ[f"MLOPS_REGISTRY_{key.upper()}"] = text
        uvicorn.run(
            "registry_server.app:create_app_from_env",
            factory=True,
            workers=settings.workers,
            **common,
        )
    else:
        uvicorn.run(create_app(settings), **common)
