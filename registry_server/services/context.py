"""What every service call needs: the database, the MLflow gateway, the policy, a clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.policy import Policy
    from registry_server.db.engine import Database
    from registry_server.mlflow_gateway import MlflowGateway
    from registry_server.secret_box import SecretBox
    from registry_server.signing import SigningKey

__all__ = ["Caller", "ServerContext", "utc"]


def _now() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (SQLite hands back naive ones)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class ServerContext:
    """Shared state of one server process; ``clock`` is injectable for tests.

    Example:
        >>> ctx = ServerContext(db=None, gateway=None, policy=None)  # doctest: +SKIP
    """

    db: Database
    gateway: MlflowGateway
    policy: Policy
    clock: Callable[[], datetime] = field(default=_now)
    intent_lease: float = 30.0
    retry_backoff: float = 2.0  # seconds before the first retry of a move or a verification
    retry_backoff_max: float = 300.0  # and the longest wait between two
    fault_point: str | None = None
    secret_box: SecretBox | None = None
    webhook_allow_private: bool = False
    signing_key: SigningKey | None = None  # signs decisions and audit checkpoints
    drift_page_size: int = 1000
    governed_models: str = "*"  # glob of the models whose protected aliases it guards
    #: the verifier (see registry_server.services.verifier)
    dvc_remote_url: str | None = None  # None: the remote each dataset records
    dvc_remote_config: dict[str, Any] = field(default_factory=dict)
    verify_lease: float = 600.0
    verify_tolerance: float = 1e-6
    verify_max_attempts: int = 5
    #: the policy file and what the last reload saw of it (``services.policies``)
    policy_file: Any = None
    #: model name -> MLflow's last-updated time when its alias holders were last verified
    alias_checks: dict[str, int | None] = field(default_factory=dict)

    def now(self) -> datetime:
        """The current time in UTC, from the injected clock."""
        return utc(self.clock())

    def next_retry(self, attempts: int) -> datetime:
        """When a move or a verification that failed ``attempts`` times is tried again:
        ``retry_backoff`` doubled per earlier failure, at most ``retry_backoff_max``."""
        delay = min(self.retry_backoff * 2.0 ** (attempts - 1), self.retry_backoff_max)
        return self.now() + timedelta(seconds=delay)


@dataclass(frozen=True)
class Caller:
    """The authenticated user of a request and their roles.

    Example:
        >>> Caller("ann", ("approver",)).has_any(("approver", "admin"))
        True
    """

    user: str
    roles: tuple[str, ...]

    def has_any(self, roles: tuple[str, ...] | list[str]) -> bool:
        """True if the caller holds at least one of ``roles``."""
        return bool(set(self.roles) & set(roles))

    @property
    def is_admin(self) -> bool:
        """True for role ``admin``."""
        return "admin" in self.roles
