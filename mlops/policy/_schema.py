"""The promotion policy file: its pydantic schema, parsing and loading.

The private half of :mod:`mlops.policy` (import the public names from there). Every
problem in a policy raises :class:`~mlops.errors.PolicyError` naming its key path
(``targets.production.approvals.ttl``), whether the schema or a rule across keys (a
freeze window ending before it starts) rejected it.

Example:
    >>> from mlops.policy import parse_policy
    >>> parse_policy({"targets": {"staging": {"approvals": {"count": 1}}}}).targets[
    ...     "staging"].approvals.count
    1
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlops.errors import PolicyError

_TTL_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_TTL_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DEFAULT_ROLES = ("approver", "admin")


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _parse_ttl(value: Any) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"ttl must be a duration like '72h' or '3d', got {value!r}")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    text = str(value).strip().replace(" ", "")
    if not text or _TTL_PART.sub("", text):
        raise ValueError(f"ttl must be a duration like '72h', '3d' or '1d12h', got {value!r}")
    parts = {_TTL_UNITS[u]: 0.0 for u in _TTL_UNITS}
    for number, unit in _TTL_PART.findall(text):
        parts[_TTL_UNITS[unit]] += float(number)
    return timedelta(**parts)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricRule(_Model):
    """A metric gate with MLflow ``MetricThreshold`` meaning.

    Example:
        >>> MetricRule(threshold=0.8).greater_is_better
        True
    """

    threshold: float | None = None
    min_absolute_change: float | None = Field(default=None, ge=0)
    min_relative_change: float | None = Field(default=None, ge=0, le=1)
    greater_is_better: bool = True


class Checks(_Model):
    """What the evidence must show before a request is accepted.

    Example:
        >>> Checks(suites=["iris_train"], smoke_test=True).suites
        ('iris_train',)
    """

    suites: tuple[str, ...] = ()
    metrics: dict[str, MetricRule] = Field(default_factory=dict)
    must_beat_champion: bool = False
    smoke_test: bool = False


class Approvals(_Model):
    """Who must approve: ``count`` distinct people holding one of ``roles``, within ``ttl``.

    ``ttl`` is how long one approval counts; ``request_ttl`` (optional) is how long a
    request may stay pending before the server marks it expired.

    Example:
        >>> Approvals(count=2, ttl="72h").ttl
        datetime.timedelta(days=3)
    """

    count: int = Field(default=0, ge=0)
    roles: tuple[str, ...] = DEFAULT_ROLES
    exclude_requester: bool = True
    distinct: bool = True
    ttl: timedelta | None = None
    request_ttl: timedelta | None = None

    @field_validator("ttl", "request_ttl", mode="before")
    @classmethod
    def _ttl(cls, value: Any) -> timedelta | None:
        return _parse_ttl(value)


class FreezeWindow(_Model):
    """A period in which the target cannot be promoted.

    Example:
        >>> w = FreezeWindow(start="2026-12-24T00:00:00Z", end="2026-12-27T00:00:00Z")
        >>> w.contains(datetime(2026, 12, 25, tzinfo=UTC))
        True
    """

    start: datetime
    end: datetime
    reason: str = ""

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return _utc(value)

    def contains(self, now: datetime) -> bool:
        """True when ``now`` is inside ``[start, end)``."""
        return self.start <= _utc(now) < self.end


class Rollback(_Model):
    """Who may roll the alias back to its previous holder.

    Example:
        >>> Rollback().roles
        ('approver', 'admin')
    """

    roles: tuple[str, ...] = DEFAULT_ROLES


class TargetPolicy(_Model):
    """The rules for one target alias (e.g. ``production``).

    Example:
        >>> TargetPolicy(protected=True).approvals.count
        0
    """

    protected: bool = False
    checks: Checks = Field(default_factory=Checks)
    approvals: Approvals = Field(default_factory=Approvals)
    freeze_windows: tuple[FreezeWindow, ...] = ()
    rollback: Rollback = Field(default_factory=Rollback)


class Policy(_Model):
    """A parsed promotion policy; build it with :func:`parse_policy` or :func:`load_policy`.

    Example:
        >>> p = parse_policy({"version": 1, "targets": {"staging": {}}})
        >>> sorted(p.targets), len(p.digest)
        (['staging'], 64)
    """

    version: Literal[1] = 1
    targets: dict[str, TargetPolicy] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (ttl in seconds, datetimes ISO 8601)."""
        data = self.model_dump(mode="json")
        for name, target in self.targets.items():
            ttl = target.approvals.ttl
            data["targets"][name]["approvals"]["ttl"] = ttl.total_seconds() if ttl else None
            rttl = target.approvals.request_ttl
            data["targets"][name]["approvals"]["request_ttl"] = (
                rttl.total_seconds() if rttl else None
            )
        return data

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`to_dict`."""
        return hashlib.sha256(_canonical_json(self.to_dict())).hexdigest()

    def target(self, name: str) -> TargetPolicy:
        """The rules for ``name``; :class:`PolicyError` if the policy does not know it."""
        try:
            return self.targets[name]
        except KeyError:
            raise PolicyError(
                f"Target {name!r} is not in the policy (known: {sorted(self.targets)}).",
                hint=f"Add targets.{name} to promotion-policy.yaml or pick a known target.",
            ) from None


# --- parsing ------------------------------------------------------------------------------
def _loc(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _semantic_errors(policy: Policy) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for name, target in policy.targets.items():
        base = f"targets.{name}"
        if target.approvals.count > 0 and not target.approvals.roles:
            errors.append((f"{base}.approvals.roles", "must name a role when count > 0"))
        for key in ("ttl", "request_ttl"):
            value = getattr(target.approvals, key)
            if value is not None and value <= timedelta(0):
                errors.append((f"{base}.approvals.{key}", "must be a positive duration"))
        for metric, rule in target.checks.metrics.items():
            unset = (rule.threshold, rule.min_absolute_change, rule.min_relative_change)
            if all(v is None for v in unset):
                errors.append(
                    (
                        f"{base}.checks.metrics.{metric}",
                        "needs threshold, min_absolute_change or min_relative_change",
                    )
                )
        for i, window in enumerate(target.freeze_windows):
            if window.end <= window.start:
                errors.append((f"{base}.freeze_windows.{i}.end", "must be after start"))
        if not target.rollback.roles:
            errors.append((f"{base}.rollback.roles", "must name at least one role"))
    return errors


def parse_policy(source: Mapping[str, Any] | str) -> Policy:
    """Parse and check a policy from a mapping or YAML text.

    Raises :class:`PolicyError` naming the key path of the first problem(s).

    Example:
        >>> parse_policy("version: 1\\ntargets: {staging: {approvals: {count: 1}}}").targets[
        ...     "staging"].approvals.count
        1
    """
    if isinstance(source, str):
        import yaml

        try:
            source = yaml.safe_load(source) or {}
        except yaml.YAMLError as exc:
            raise PolicyError(f"The policy is not valid YAML: {exc}") from exc
    if not isinstance(source, Mapping):
        raise PolicyError(f"The policy must be a mapping, got {type(source).__name__}.")
    try:
        policy = Policy.model_validate(dict(source))
    except ValidationError as exc:
        problems = [(_loc(e["loc"]), e["msg"]) for e in exc.errors()]
        raise _policy_error(problems) from exc
    problems = _semantic_errors(policy)
    if problems:
        raise _policy_error(problems)
    return policy


def _policy_error(problems: list[tuple[str, str]]) -> PolicyError:
    text = "; ".join(f"{path}: {msg}" for path, msg in problems)
    return PolicyError(
        f"Invalid promotion policy: {text}.",
        hint=f"Fix {problems[0][0]} in promotion-policy.yaml.",
        keys=[path for path, _ in problems],
    )


def load_policy(path: str | Path | None = None) -> Policy:
    """Read the policy file (default: ``load_settings().policy_path``).

    Example:
        >>> load_policy("promotion-policy.yaml").targets["production"].protected  # doctest: +SKIP
        True
    """
    if path is None:
        from mlops.config import load_settings

        path = load_settings().policy_path
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(
            f"Cannot read the policy file {str(path)!r}: {exc.strerror}.",
            hint="Create promotion-policy.yaml or set MLOPS_POLICY_PATH.",
        ) from exc
    return parse_policy(text)
