"""Promotion policy as code: one YAML file, the same verdict everywhere.

The policy (``promotion-policy.yaml``) says, per target alias, which checks the evidence
must pass, how many approvals from which roles are needed, how long an approval stays
valid and when promotions are frozen. This module is pure (no web, no MLflow): the
library, the pipeline stages and the registry server all call :func:`check` and
:func:`evaluate_approvals` and therefore agree.

Example:
    >>> from mlops.policy import parse_policy, check
    >>> policy = parse_policy('''
    ... version: 1
    ... targets:
    ...   staging: {checks: {smoke_test: true}, approvals: {count: 1}}
    ... ''')
    >>> verdict = check({"package": {"smoke": {"passed": True}}}, policy, "staging")
    >>> verdict.passed
    True
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlops.errors import PolicyError

__all__ = [
    "ApprovalRecord",
    "Approvals",
    "Checks",
    "FreezeWindow",
    "MetricRule",
    "Policy",
    "Rollback",
    "RuleResult",
    "Tally",
    "TargetPolicy",
    "Verdict",
    "active_freeze",
    "check",
    "evaluate_approvals",
    "load_policy",
    "parse_policy",
]

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


# --- results --------------------------------------------------------------------------------
def _html_table(title: str, rows: Iterable[tuple[str, bool, str]], ok: bool) -> str:
    colour = "#1a7f37" if ok else "#cf222e"
    body = "".join(
        f"<tr><td><code>{html.escape(r)}</code></td><td>{'✅' if p else '❌'}</td>"
        f"<td>{html.escape(why)}</td></tr>"
        for r, p, why in rows
    )
    return (
        f"<div><strong style='color:{colour}'>{html.escape(title)}</strong>"
        f"<table><tr><th>rule</th><th>ok</th><th>why</th></tr>{body}</table></div>"
    )


@dataclass(frozen=True)
class RuleResult:
    """One rule of a :class:`Verdict`: its name, whether it passed and why.

    Example:
        >>> RuleResult("checks.smoke_test", True, "ok").to_dict()["rule"]
        'checks.smoke_test'
    """

    rule: str
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """``{"rule", "passed", "reason"}``."""
        return {"rule": self.rule, "passed": self.passed, "reason": self.reason}


@dataclass(frozen=True)
class Verdict:
    """The answer of :func:`check`: every rule evaluated, and whether all passed.

    Example:
        >>> v = Verdict("staging", False, (RuleResult("checks.smoke_test", False, "no package"),))
        >>> [r.rule for r in v.failures]
        ['checks.smoke_test']
    """

    target: str
    passed: bool
    rules: tuple[RuleResult, ...] = ()

    @property
    def failures(self) -> tuple[RuleResult, ...]:
        """The rules that did not pass."""
        return tuple(r for r in self.rules if not r.passed)

    def to_dict(self) -> dict[str, Any]:
        """``{"target", "passed", "rules": [...]}``."""
        return {
            "target": self.target,
            "passed": self.passed,
            "rules": [r.to_dict() for r in self.rules],
        }

    def __str__(self) -> str:
        head = f"{self.target}: {'passed' if self.passed else 'blocked'}"
        lines = [f"  [{'ok' if r.passed else 'FAIL'}] {r.rule}: {r.reason}" for r in self.rules]
        return "\n".join([head, *lines])

    def _repr_html_(self) -> str:
        title = f"Policy verdict for {self.target}: {'passed' if self.passed else 'blocked'}"
        rows = [(r.rule, r.passed, r.reason) for r in self.rules]
        return _html_table(title, rows, self.passed)


# --- checks -----------------------------------------------------------------------------
def _as_dict(evidence: Any) -> dict[str, Any]:
    if isinstance(evidence, Mapping):
        return dict(evidence)
    to_dict = getattr(evidence, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    raise PolicyError(
        f"Evidence must be a mapping or have to_dict(), got {type(evidence).__name__}.",
        hint="Pass an mlops.evidence.Evidence or its to_dict().",
    )


def _check_suite(name: str, validations: list[Mapping[str, Any]]) -> RuleResult:
    rule = f"checks.suites.{name}"
    found = [v for v in validations if v.get("suite") == name]
    if not found:
        return RuleResult(rule, False, f"no validation of suite {name!r} in the evidence")
    if any(v.get("success") is True for v in found):
        return RuleResult(rule, True, f"suite {name!r} passed")
    stats = found[-1].get("statistics") or {}
    bad = stats.get("unsuccessful", "?")
    return RuleResult(rule, False, f"suite {name!r} failed ({bad} expectation(s) unsuccessful)")


def _metric_failures(cand: float, champ: float | None, rule: MetricRule) -> list[str]:
    up = rule.greater_is_better
    fails: list[str] = []
    if rule.threshold is not None and not (
        cand >= rule.threshold if up else cand <= rule.threshold
    ):
        op = ">=" if up else "<="
        fails.append(f"{cand:g} is not {op} threshold {rule.threshold:g}")
    if champ is None:
        return fails
    if rule.min_absolute_change is not None:
        need = champ + rule.min_absolute_change if up else champ - rule.min_absolute_change
        if not (cand >= need if up else cand <= need):
            fails.append(
                f"{cand:g} vs champion {champ:g}: absolute change below "
                f"{rule.min_absolute_change:g} (needs {'>=' if up else '<='} {need:g})"
            )
    if rule.min_relative_change is not None:
        delta = rule.min_relative_change * abs(champ)
        need = champ + delta if up else champ - delta
        if not (cand >= need if up else cand <= need):
            fails.append(
                f"{cand:g} vs champion {champ:g}: relative change below "
                f"{rule.min_relative_change:g} (needs {'>=' if up else '<='} {need:g})"
            )
    return fails


def _check_metric(name: str, rule: MetricRule, evaluation: Mapping[str, Any] | None) -> RuleResult:
    key = f"checks.metrics.{name}"
    if not evaluation:
        return RuleResult(key, False, "no evaluation in the evidence")
    metrics = evaluation.get("metrics") or {}
    candidate = (metrics.get("candidate") or {}).get(name)
    if not isinstance(candidate, int | float):
        return RuleResult(key, False, f"metric {name!r} missing from the candidate's metrics")
    champion = (metrics.get("champion") or {}).get(name)
    champion = champion if isinstance(champion, int | float) else None
    fails = _metric_failures(float(candidate), champion, rule)
    if fails:
        return RuleResult(key, False, f"{name}: " + "; ".join(fails))
    vs = f" vs champion {champion:g}" if champion is not None else " (no champion)"
    return RuleResult(key, True, f"{name} = {candidate:g}{vs}")


def _check_beats(checks: Checks, evaluation: Mapping[str, Any] | None) -> RuleResult:
    key = "checks.must_beat_champion"
    if not evaluation:
        return RuleResult(key, False, "no evaluation in the evidence")
    metrics = evaluation.get("metrics") or {}
    champion = metrics.get("champion")
    if not champion:
        return RuleResult(key, True, "no champion holds the alias yet")
    candidate = metrics.get("candidate") or {}
    rules = checks.metrics or {n: MetricRule(min_absolute_change=0.0) for n in champion}
    worse = []
    for name, rule in rules.items():
        cand, champ = candidate.get(name), champion.get(name)
        if not isinstance(cand, int | float) or not isinstance(champ, int | float):
            worse.append(f"{name} not scored for both")
        elif cand < champ if rule.greater_is_better else cand > champ:
            worse.append(f"{name} {cand:g} is worse than champion {champ:g}")
    if worse:
        return RuleResult(key, False, "; ".join(worse))
    return RuleResult(key, True, "at least as good as the champion on " + ", ".join(rules))


def _check_smoke(package: Mapping[str, Any] | None) -> RuleResult:
    key = "checks.smoke_test"
    smoke = (package or {}).get("smoke")
    if not smoke:
        return RuleResult(key, False, "no package smoke test in the evidence")
    if smoke.get("passed") is True:
        return RuleResult(key, True, f"smoke test passed on {smoke.get('rows', '?')} row(s)")
    why = smoke.get("error") or f"{smoke.get('mismatches', '?')} mismatching prediction(s)"
    return RuleResult(key, False, f"smoke test failed: {why}")


def check(evidence: Any, policy: Policy, target: str, *, now: datetime | None = None) -> Verdict:
    """Judge an evidence bundle against the policy for ``target``; every rule says why.

    Metric rules are recomputed from the evidence's raw numbers, never taken from the
    evaluation's own verdicts. With ``now``, an active freeze window fails rule ``freeze``.

    Example:
        >>> p = parse_policy({"targets": {"prod": {"checks": {"smoke_test": True}}}})
        >>> check({}, p, "prod").failures[0].reason
        'no package smoke test in the evidence'
    """
    if target not in policy.targets:
        known = ", ".join(sorted(policy.targets)) or "none"
        reason = f"target {target!r} is not in the policy (known: {known})"
        return Verdict(target, False, (RuleResult("target.known", False, reason),))
    data, rules = _as_dict(evidence), [RuleResult("target.known", True, f"{target} is known")]
    tp = policy.targets[target]
    validations = [v for v in data.get("validation") or () if isinstance(v, Mapping)]
    evaluation = data.get("evaluation")
    rules += [_check_suite(s, validations) for s in tp.checks.suites]
    rules += [_check_metric(n, r, evaluation) for n, r in tp.checks.metrics.items()]
    if tp.checks.must_beat_champion:
        rules.append(_check_beats(tp.checks, evaluation))
    if tp.checks.smoke_test:
        rules.append(_check_smoke(data.get("package")))
    if now is not None:
        window = active_freeze(tp, now)
        reason = f"frozen until {window.end.isoformat()}: {window.reason}" if window else "open"
        rules.append(RuleResult("freeze", window is None, reason))
    return Verdict(target, all(r.passed for r in rules), tuple(rules))


def active_freeze(target_policy: TargetPolicy, now: datetime) -> FreezeWindow | None:
    """The freeze window covering ``now``, if any.

    Example:
        >>> active_freeze(TargetPolicy(), datetime.now(UTC)) is None
        True
    """
    return next((w for w in target_policy.freeze_windows if w.contains(now)), None)


# --- approvals ----------------------------------------------------------------------------
class ApprovalRecord(NamedTuple):
    """One decision as :func:`evaluate_approvals` reads it.

    Example:
        >>> ApprovalRecord("ann", ("approver",), "approve", "d", datetime(2026, 1, 1)).user
        'ann'
    """

    user: str
    roles: tuple[str, ...]
    decision: str  # "approve" | "reject"
    digest: str
    at: datetime


@dataclass(frozen=True)
class Tally:
    """How far a request is from its quorum, and why some approvals did not count.

    Example:
        >>> t = Tally(have=1, need=2, quorum=False, counted=("ann",), ignored=(("bob", "x"),))
        >>> str(t).splitlines()[0]
        '1/2 approvals'
    """

    have: int
    need: int
    quorum: bool
    counted: tuple[str, ...] = ()
    ignored: tuple[tuple[str, str], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "have": self.have,
            "need": self.need,
            "quorum": self.quorum,
            "counted": list(self.counted),
            "ignored": [{"user": u, "reason": r} for u, r in self.ignored],
        }

    def why_not(self, user: str) -> str | None:
        """Why ``user``'s approval did not count (``None`` if it counted)."""
        return next((r for u, r in self.ignored if u == user), None)

    def __str__(self) -> str:
        head = f"{self.have}/{self.need} approvals" + (" (quorum)" if self.quorum else "")
        lines = [f"  counted: {u}" for u in self.counted]
        lines += [f"  ignored: {u}: {r}" for u, r in self.ignored]
        return "\n".join([head, *lines])

    def _repr_html_(self) -> str:
        rows = [(u, True, "counted") for u in self.counted]
        rows += [(u, False, r) for u, r in self.ignored]
        return _html_table(f"{self.have}/{self.need} approvals", rows, self.quorum)


def _ignore_reason(
    rec: ApprovalRecord, tp: TargetPolicy, requester: str, digest: str, now: datetime
) -> str | None:
    rules = tp.approvals
    if rec.decision != "approve":
        return f"decision was {rec.decision!r}"
    if rules.exclude_requester and rec.user == requester:
        return "the requester may not approve their own request"
    if not set(rec.roles) & set(rules.roles):
        return f"roles {sorted(rec.roles)} hold none of {list(rules.roles)}"
    if rec.digest != digest:
        return f"approved evidence {rec.digest[:12]}, current is {digest[:12]}"
    if rules.ttl is not None and _utc(now) - _utc(rec.at) > rules.ttl:
        return f"older than the approval ttl ({rules.ttl})"
    return None


def evaluate_approvals(
    target_policy: TargetPolicy,
    approvals: Iterable[ApprovalRecord | tuple[Any, ...]],
    *,
    requester: str,
    digest: str,
    now: datetime,
) -> Tally:
    """Count the approvals that satisfy the policy (pure; the server calls it).

    Each approval is ``(user, roles, decision, digest, at)``.

    Example:
        >>> tp = parse_policy({"targets": {"p": {"approvals": {"count": 1}}}}).targets["p"]
        >>> now = datetime(2026, 1, 1, tzinfo=UTC)
        >>> evaluate_approvals(tp, [("ann", ("approver",), "approve", "d", now)],
        ...                    requester="bob", digest="d", now=now).quorum
        True
    """
    counted: list[str] = []
    ignored: list[tuple[str, str]] = []
    records = sorted((ApprovalRecord(*a) for a in approvals), key=lambda r: _utc(r.at))
    for rec in records:
        reason = _ignore_reason(rec, target_policy, requester, digest, now)
        if reason is None and target_policy.approvals.distinct and rec.user in counted:
            reason = "already counted once for this person"
        if reason is None:
            counted.append(rec.user)
        else:
            ignored.append((rec.user, reason))
    need = target_policy.approvals.count
    have = len(counted)
    return Tally(have, need, have >= need, tuple(counted), tuple(ignored))
