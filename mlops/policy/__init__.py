"""Promotion policy as code: one YAML file, the same verdict in the library, CLI and server.

Example:
    >>> from mlops.policy import check, load_policy
    >>> policy = load_policy("promotion-policy.yaml")  # doctest: +SKIP
    >>> check(evidence, policy, "production").passed  # doctest: +SKIP
    True
"""

from mlops.policy._check import (
    ApprovalRecord,
    RuleResult,
    Soak,
    Tally,
    Verdict,
    active_freeze,
    approval_reasons,
    check,
    evaluate_approvals,
    expiring_approvals,
    soak,
)
from mlops.policy._schema import (
    DEFAULT_ROLES,
    Approvals,
    Checks,
    FreezeWindow,
    MetricRule,
    ModelScope,
    Policy,
    Requires,
    Rollback,
    TargetPolicy,
    load_policy,
    parse_policy,
)
from mlops.policy._scope import describe

__all__ = [
    "DEFAULT_ROLES",
    "ApprovalRecord",
    "Approvals",
    "Checks",
    "FreezeWindow",
    "MetricRule",
    "ModelScope",
    "Policy",
    "Requires",
    "Rollback",
    "RuleResult",
    "Soak",
    "Tally",
    "TargetPolicy",
    "Verdict",
    "active_freeze",
    "approval_reasons",
    "check",
    "describe",
    "evaluate_approvals",
    "expiring_approvals",
    "load_policy",
    "parse_policy",
    "soak",
]
