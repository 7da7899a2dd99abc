"""Settings from ``MLOPS_*`` environment variables, with local defaults.

Nothing is read at import time: call :func:`load_settings` when you need them.

Example:
    >>> from mlops.config import load_settings
    >>> s = load_settings()
    >>> s.tracking_uri.startswith(("sqlite:", "http", "file:", "postgresql"))
    True
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """Library settings. Each field reads ``MLOPS_<FIELD>`` from the environment."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore", frozen=True)

    home: Path = Field(
        default=Path(".mlops"),
        description="Project-local folder for the SQLite stores, artifacts and Bento home.",
    )
    tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default sqlite:///<home>/mlflow.db."
    )
    registry_uri: str | None = Field(
        default=None, description="MLflow model-registry URI; default = tracking_uri."
    )
    artifact_root: Path | None = Field(
        default=None, description="Where MLflow writes artifacts for new experiments."
    )
    registry_url: str = Field(
        default="http://127.0.0.1:8765", description="URL of the mlops registry server."
    )
    token: str | None = Field(default=None, description="Bearer token for the registry server.")
    dvc_root: Path | None = Field(
        default=None, description="Root of the DVC repository; default: found from the cwd."
    )
    policy_path: Path = Field(
        default=Path("promotion-policy.yaml"), description="The promotion policy file."
    )
    experiment: str = Field(default="mlops", description="Default MLflow experiment name.")

    def resolved_tracking_uri(self) -> str:
        """The tracking URI, defaulting to a SQLite file under ``home``."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    def resolved_registry_uri(self) -> str:
        """The model-registry URI, defaulting to the tracking URI."""
        return self.registry_uri or self.resolved_tracking_uri()

    def resolved_artifact_root(self) -> Path:
        """Where new experiments keep their artifacts (``home/artifacts`` by default)."""
        return (self.artifact_root or self.home / "artifacts").resolve()


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment now; keyword arguments override them."""
    return Settings(**overrides)  # type: ignore[arg-type]
