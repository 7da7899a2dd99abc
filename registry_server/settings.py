"""Server settings from ``MLOPS_REGISTRY_*`` environment variables.

Example:
    >>> from registry_server.settings import RegistrySettings
    >>> RegistrySettings(database_url="sqlite:///:memory:").port
    8765
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RegistrySettings", "load_registry_settings"]


def _mlops():
    from mlops.config import load_settings

    return load_settings()


class RegistrySettings(BaseSettings):
    """Settings of the registry server; each field reads ``MLOPS_REGISTRY_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_REGISTRY_", extra="ignore", frozen=True)

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{(_mlops().home / 'registry.db').resolve()}",
        description="SQLAlchemy URL of the server's own database (SQLite or PostgreSQL).",
    )
    policy_path: Path = Field(
        default_factory=lambda: _mlops().policy_path, description="The promotion policy file."
    )
    tracking_uri: str = Field(
        default_factory=lambda: _mlops().resolved_tracking_uri(),
        description="MLflow tracking URI the server reads evidence from and sets aliases in.",
    )
    registry_uri: str | None = Field(default=None, description="MLflow registry URI.")
    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8765, description="Port to listen on.")
    workers: int = Field(default=1, ge=1, description="Uvicorn worker processes.")
    db_pool_size: int = Field(
        default=20,
        ge=1,
        le=200,
        description="PostgreSQL connections each worker keeps open for its requests; a "
        "request beyond them opens and closes a connection of its own (slow under load).",
    )
    read_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Threads each worker gives the list and one-request reads at once; "
        "these reads are CPU-bound, so more threads than cores only queue for the "
        "interpreter (writes, which wait on MLflow, keep the shared pool).",
    )
    reconcile_interval: float = Field(
        default=30.0, ge=0, description="Seconds between retries of pending alias moves (0: off)."
    )
    policy_poll_interval: float = Field(
        default=5.0,
        ge=0,
        description="Seconds between checks of the policy file for changes; a changed, "
        "valid file is put in force without restart (0: only POST /v1/policy/reload).",
    )
    drift_page_size: int = Field(
        default=1000,
        ge=1,
        le=1000,
        description="Registered models read per MLflow call by the protected-alias sweep.",
    )
    governed_models: str = Field(
        default="*",
        min_length=1,
        description="Glob of the registered models whose protected aliases this server "
        "governs (default: every model in the registry).",
    )
    mlflow_webhook_url: str | None = Field(
        default=None,
        description="URL at which the MLflow tracking server reaches this server's "
        "POST /v1/mlflow/webhook. With mlflow_webhook_secret set, the server subscribes to "
        "MLflow's alias events at start and repairs drift within a second.",
    )
    mlflow_webhook_secret: str | None = Field(
        default=None,
        min_length=16,
        description="HMAC key MLflow signs its alias webhooks with (X-MLflow-Signature); "
        "deliveries without a valid signature are refused.",
    )
    mlflow_webhook_tolerance: float = Field(
        default=300.0,
        gt=0,
        description="Seconds an MLflow webhook's signed timestamp may differ from now "
        "(older deliveries are refused as replays).",
    )
    admin_token: str | None = Field(
        default=None, description="If set, a token for user 'admin' with role admin at start."
    )
    intent_lease: float = Field(
        default=30.0,
        gt=0,
        description="Seconds an alias move is claimed by one worker before another may retry it.",
    )
    retry_backoff: float = Field(
        default=2.0,
        gt=0,
        description="Seconds before an alias move or a verification that failed is retried "
        "(doubles each time, up to retry_backoff_max).",
    )
    retry_backoff_max: float = Field(
        default=300.0,
        gt=0,
        description="The longest wait, seconds, between two retries of a move or a "
        "verification, and between two passes of a background loop that keeps failing.",
    )
    webhook_interval: float = Field(
        default=2.0, ge=0, description="Seconds between webhook dispatch passes (0: off)."
    )
    webhook_backoff: float = Field(
        default=1.0, gt=0, description="Seconds before the first webhook retry (doubles each time)."
    )
    webhook_timeout: float = Field(default=10.0, gt=0, description="Seconds per webhook call.")
    webhook_max_attempts: int = Field(
        default=12, ge=1, description="Attempts before a webhook delivery is marked failed."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow webhook URLs on loopback, private, link-local and metadata "
        "addresses (tests; refused by default).",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s), comma-separated, encrypting webhook secrets at rest "
        "(default: a key file beside a SQLite database; required for PostgreSQL).",
    )
    signing_key: SecretStr | None = Field(
        default=None,
        description="PEM text of the Ed25519 key signing promotions, rollbacks and audit "
        "checkpoints (default: signing_key_file, else a key file beside a SQLite database; "
        "required for PostgreSQL).",
    )
    signing_key_file: Path | None = Field(
        default=None, description="PEM file of the signing key (`mlops key create FILE`)."
    )
    checkpoint_every: int = Field(
        default=100,
        ge=1,
        description="Audit events between signed checkpoints of the chain head (every "
        "promotion and rollback is checkpointed too).",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest accepted request body (413 above)."
    )
    fault_point: (
        Literal["after_intent", "after_mlflow_set", "after_final", "mid_verification"] | None
    ) = Field(
        default=None,
        description="Test only: kill the process at this point of an alias move "
        "(after_intent, after_mlflow_set, after_final) or of a verification "
        "(mid_verification: re-derived, outcome not yet written).",
    )
    dvc_remote_url: str | None = Field(
        default=None,
        description="DVC remote the verifier fetches evidence data from by md5 (a folder, "
        "s3://bucket/prefix, ...; S3 credentials from the usual AWS_* variables). Default: "
        "the remote each dataset of the evidence records.",
    )
    dvc_remote_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible DVC remote (e.g. http://minio:9000).",
    )
    verify_interval: float = Field(
        default=2.0, ge=0, description="Seconds between verifier passes (0: off)."
    )
    verify_lease: float = Field(
        default=600.0,
        gt=0,
        description="Seconds a verification is claimed by one worker before another may "
        "run it again (a worker that died mid-way is replaced after it).",
    )
    verify_tolerance: float = Field(
        default=1e-6,
        ge=0,
        description="Largest absolute difference between a number in the evidence and its "
        "re-derived value that still counts as equal.",
    )
    verify_max_attempts: int = Field(
        default=5,
        ge=1,
        description="Tries of a verification whose remote or MLflow is unreachable before "
        "the request ends rejected (evidence_unverifiable).",
    )
    mlflow_ui_url: str | None = Field(
        default=None,
        description="Address of the MLflow web UI (e.g. http://mlflow.internal:5000); the "
        "reviewer pages link runs and model versions there.",
    )
    log_level: str = Field(default="warning", description="Uvicorn log level.")
    ui: bool = Field(default=True, description="Serve the reviewer pages under /ui.")
    session_secret: str | None = Field(
        default=None, description="Key signing the pages' session cookie (default: a key file)."
    )


def load_registry_settings(**overrides: object) -> RegistrySettings:
    """Read the server settings from the environment now; keyword arguments override them."""
    return RegistrySettings(**overrides)  # type: ignore[arg-type]
