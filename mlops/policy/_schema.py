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
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlops._directions import direction
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

    ``greater_is_better`` may be left out for a metric whose direction is known (``rmse``,
    ``mae``, ``log_loss``... lower; ``accuracy``, ``f1``, ``r2``... higher): :class:`Checks`
    fills it in. A metric of unknown direction must say it.

    Example:
        >>> MetricRule(threshold=0.8).greater_is_better is None
        True
    """

    threshold: float | None = None
    min_absolute_change: float | None = Field(default=None, ge=0)
    min_relative_change: float | None = Field(default=None, ge=0, le=1)
    greater_is_better: bool | None = None


class Checks(_Model):
    """What the evidence must show before a request is accepted.

    - ``must_beat_champion``: strictly better than the alias holder on every metric rule
      (by at least its ``min_absolute_change`` / ``min_relative_change``); a tie fails.
    - ``must_not_regress``: no metric scored for both is worse than the holder's; a tie
      passes.

    Example:
        >>> Checks(suites=["iris_train"], smoke_test=True).suites
        ('iris_train',)
        >>> Checks(metrics={"rmse": {"threshold": 70}}).metrics["rmse"].greater_is_better
        False
    """

    suites: tuple[str, ...] = ()
    metrics: dict[str, MetricRule] = Field(default_factory=dict)
    must_beat_champion: bool = False
    must_not_regress: bool = False
    smoke_test: bool = False

    @field_validator("metrics")
    @classmethod
    def _directions(cls, metrics: dict[str, MetricRule]) -> dict[str, MetricRule]:
        out = {}
        for name, rule in metrics.items():
            known = direction(name)
            if rule.greater_is_better is None and known is not None:
                rule = rule.model_copy(update={"greater_is_better": known})
            out[name] = rule
        return out


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


#: what the registry server can re-derive from pinned inputs before approvals count
VerifyStep = Literal["validation", "evaluation"]


class Requires(_Model):
    """A ladder step: the version must hold alias ``held`` for ``for`` before this target.

    The time counts from the moment the version took ``held`` and only while it still
    holds it; a rollback from ``held`` voids a request waiting on it.

    Example:
        >>> Requires.model_validate({"held": "staging", "for": "24h"}).for_
        datetime.timedelta(days=1)
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    held: str = Field(min_length=1)
    for_: timedelta = Field(alias="for")

    @field_validator("for_", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta | None:
        return _parse_ttl(value)


class TargetPolicy(_Model):
    """The rules for one target alias (e.g. ``production``).

    ``verify`` names what the registry server re-derives itself before a request takes
    approvals: ``validation`` re-runs each recorded suite on the data fetched by its DVC
    md5, ``evaluation`` re-scores the candidate and the champion on the evaluation data.
    Empty (the default): the server checks the evidence's digest and verdict only.

    Example:
        >>> TargetPolicy(protected=True).approvals.count
        0
        >>> TargetPolicy(verify=["validation", "evaluation"]).verify
        ('validation', 'evaluation')
    """

    protected: bool = False
    verify: tuple[VerifyStep, ...] = ()
    checks: Checks = Field(default_factory=Checks)
    approvals: Approvals = Field(default_factory=Approvals)
    freeze_windows: tuple[FreezeWindow, ...] = ()
    rollback: Rollback = Field(default_factory=Rollback)
    requires: Requires | None = None


class ModelScope(_Model):
    """Per-model overrides: ``targets`` holding only the keys that change.

    Example:
        >>> scope = ModelScope.model_validate({"targets": {"production": {
        ...     "checks": {"metrics": {"rmse": {"threshold": 70}}}}}})
        >>> scope.targets["production"].checks.metrics["rmse"].greater_is_better
        False
    """

    targets: dict[str, TargetPolicy] = Field(default_factory=dict)


class Policy(_Model):
    """A parsed promotion policy; build it with :func:`parse_policy` or :func:`load_policy`.

    ``targets`` are the defaults for every model; ``models`` maps a model name or glob to
    the overrides for it. :meth:`rules` resolves one model's rules for one target.

    Example:
        >>> p = parse_policy({"version": 1, "targets": {"staging": {}}})
        >>> sorted(p.targets), len(p.digest)
        (['staging'], 64)
    """

    version: Literal[1] = 1
    targets: dict[str, TargetPolicy] = Field(default_factory=dict)
    models: dict[str, ModelScope] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (ttl in seconds, datetimes ISO 8601).

        ``models`` appears only when the policy has overrides, so a policy without them
        keeps the digest it always had.
        """
        data = self.model_dump(mode="json")
        _ttl_seconds(self.targets, data["targets"])
        if not self.models:
            del data["models"]
        for pattern, scope in self.models.items():
            _ttl_seconds(scope.targets, data["models"][pattern]["targets"])
        return data

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`to_dict` (computed once per policy)."""
        return hashlib.sha256(_canonical_json(self.to_dict())).hexdigest()

    def _layers(self, model: str | None, target: str) -> list[tuple[str, TargetPolicy]]:
        from mlops.policy._scope import _matching

        layers = []
        if target in self.targets:
            layers.append((f"targets.{target}", self.targets[target]))
        for pattern in _matching(self.models, model) if model else ():
            scoped = self.models[pattern].targets.get(target)
            if scoped is not None:
                layers.append((f"models.{pattern}.targets.{target}", scoped))
        return layers

    def explain(self, model: str | None, target: str) -> dict[str, str]:
        """Where each set field of ``model``'s rules for ``target`` came from (key paths).

        Example:
            >>> p = parse_policy({"targets": {"prod": {"approvals": {"count": 2}}},
            ...     "models": {"reg-*": {"targets": {"prod": {"approvals": {"count": 1}}}}}})
            >>> p.explain("reg-1", "prod")["approvals.count"]
            'models.reg-*.targets.prod.approvals.count'
        """
        from mlops.policy._scope import merge_layers

        return merge_layers(self._layers(model, target))[1]

    def rules(self, model: str | None, target: str) -> TargetPolicy | None:
        """``model``'s rules for ``target`` (defaults + overrides), ``None`` if not a target.

        Example:
            >>> p = parse_policy({"targets": {"prod": {"approvals": {"count": 2}}},
            ...     "models": {"reg-*": {"targets": {"prod": {"approvals": {"count": 1}}}}}})
            >>> p.rules("reg-1", "prod").approvals.count, p.rules("clf", "prod").approvals.count
            (1, 2)
        """
        from mlops.policy._scope import merge_layers

        layers = self._layers(model, target)
        if not layers:
            return None
        if len(layers) == 1:
            return layers[0][1]
        values, _ = merge_layers(layers)
        return TargetPolicy.model_validate(values)

    def targets_for(self, model: str | None) -> dict[str, TargetPolicy]:
        """Every target ``model`` can be promoted to, with its resolved rules.

        Example:
            >>> sorted(parse_policy({"targets": {"prod": {}}}).targets_for("any"))
            ['prod']
        """
        names = set(self.targets)
        if model:
            from mlops.policy._scope import _matching

            for pattern in _matching(self.models, model):
                names |= set(self.models[pattern].targets)
        return {name: self.rules(model, name) for name in sorted(names)}  # type: ignore[misc]

    def protected_targets(self) -> set[str]:
        """Targets protected for at least one model (defaults or any override).

        Example:
            >>> parse_policy({"targets": {"prod": {"protected": True}}}).protected_targets()
            {'prod'}
        """
        scopes = [self.targets, *(s.targets for s in self.models.values())]
        return {name for targets in scopes for name, tp in targets.items() if tp.protected}

    def target(self, name: str, model: str | None = None) -> TargetPolicy:
        """The rules for ``name`` (for ``model``); :class:`PolicyError` if unknown."""
        found = self.rules(model, name)
        if found is None:
            known = sorted(self.targets_for(model))
            raise PolicyError(
                f"Target {name!r} is not in the policy"
                f"{f' for model {model!r}' if model else ''} (known: {known}).",
                hint=f"Add targets.{name} to promotion-policy.yaml or pick a known target.",
            )
        return found


def _ttl_seconds(targets: Mapping[str, TargetPolicy], data: dict[str, Any]) -> None:
    for name, target in targets.items():
        if not target.checks.must_not_regress:  # absent before the rule existed: same digest
            del data[name]["checks"]["must_not_regress"]
        if not target.verify:  # likewise: a policy without verify keeps its digest
            del data[name]["verify"]
        if target.requires is None:  # likewise: a policy without ladders keeps its digest
            del data[name]["requires"]
        else:
            data[name]["requires"] = {
                "held": target.requires.held,
                "for": target.requires.for_.total_seconds(),
            }
        for key in ("ttl", "request_ttl"):
            value = getattr(target.approvals, key)
            data[name]["approvals"][key] = value.total_seconds() if value else None


# --- parsing ------------------------------------------------------------------------------
def _loc(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _layers_to_check(policy: Policy) -> list[tuple[str, TargetPolicy]]:
    found = [(f"targets.{name}", tp) for name, tp in policy.targets.items()]
    for pattern, scope in policy.models.items():
        found += [(f"models.{pattern}.targets.{n}", tp) for n, tp in scope.targets.items()]
    return found


def _metric_errors(base: str, checks: Checks) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for metric, rule in checks.metrics.items():
        path = f"{base}.checks.metrics.{metric}"
        unset = (rule.threshold, rule.min_absolute_change, rule.min_relative_change)
        if all(v is None for v in unset):
            errors.append((path, "needs threshold, min_absolute_change or min_relative_change"))
        known = direction(metric)
        if rule.greater_is_better is None:
            errors.append(
                (
                    f"{path}.greater_is_better",
                    f"the direction of {metric!r} is not known: set greater_is_better: true "
                    "(higher is better) or false (lower is better)",
                )
            )
        elif known is not None and rule.greater_is_better != known:
            errors.append(
                (
                    f"{path}.greater_is_better",
                    f"{'higher' if known else 'lower'} {metric} is better: remove "
                    f"greater_is_better or set it to {str(known).lower()}",
                )
            )
    return errors


def _ladder_errors(base: str, target: TargetPolicy) -> list[tuple[str, str]]:
    req = target.requires
    if req is None:
        return []
    errors = []
    if base.endswith(f".{req.held}"):
        errors.append((f"{base}.requires.held", "must name another alias than the target"))
    if req.for_ <= timedelta(0):
        errors.append((f"{base}.requires.for", "must be a positive duration"))
    return errors


def _semantic_errors(policy: Policy) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for base, target in _layers_to_check(policy):
        if target.approvals.count > 0 and not target.approvals.roles:
            errors.append((f"{base}.approvals.roles", "must name a role when count > 0"))
        for key in ("ttl", "request_ttl"):
            value = getattr(target.approvals, key)
            if value is not None and value <= timedelta(0):
                errors.append((f"{base}.approvals.{key}", "must be a positive duration"))
        errors += _metric_errors(base, target.checks)
        for i, window in enumerate(target.freeze_windows):
            if window.end <= window.start:
                errors.append((f"{base}.freeze_windows.{i}.end", "must be after start"))
        if not target.rollback.roles:
            errors.append((f"{base}.rollback.roles", "must name at least one role"))
        if len(set(target.verify)) != len(target.verify):
            errors.append((f"{base}.verify", "names a step twice"))
        errors += _ladder_errors(base, target)
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
