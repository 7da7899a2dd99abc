"""The registry client: one REST call per method, the server's errors as ``mlops`` errors.

Example:
    >>> from mlops.client import RegistryClient
    >>> client = RegistryClient(token="s3cret")  # doctest: +SKIP
    >>> client.request_promotion("churn", 3, "production", digest).state  # doctest: +SKIP
    'pending'
"""

from mlops.client._client import FINAL_STATES, InvalidRequest, RegistryClient
from mlops.client._types import (
    STATES,
    AliasHolder,
    AliasMove,
    Approval,
    AuditCheck,
    AuditEvent,
    Identity,
    Promotion,
    Quorum,
    RuleResult,
    State,
    Token,
)

__all__ = [
    "FINAL_STATES",
    "STATES",
    "AliasHolder",
    "AliasMove",
    "Approval",
    "AuditCheck",
    "AuditEvent",
    "Identity",
    "InvalidRequest",
    "Promotion",
    "Quorum",
    "RegistryClient",
    "RuleResult",
    "State",
    "Token",
]
