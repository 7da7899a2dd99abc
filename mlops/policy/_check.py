"""Promotion policy as code: one YAML file, the same verdict everywhere.

The policy (``promotion-policy.yaml``) says, per target alias, which checks the evidence
must pass, how many approvals from which roles are needed, how long an approval stays
valid and when promotions are frozen. This module is pure (no web, no MLflow): the
library, the pipeline stages and the registry server all call :func:`check` and
:func:`evaluate_approvals` and therefore agree.

The schema models, :func:`parse_policy` and :func:`load_policy` are defined in
``mlops.policy._schema`` and imported from here.

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

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta  # noqa: F401  (UTC: the docstring examples)
from typing import Any, NamedTuple

from mlops._directions import direction
from mlops.errors import PolicyError
from mlops.identity import normalise_identity, same_person
from mlops.policy._schema import DEFAULT_ROLES as DEFAULT_ROLES  # public constant
from mlops.policy._schema import (
    Approvals,
    Checks,
    FreezeWindow,
    MetricRule,
    Policy,
    Rollback,
    TargetPolicy,
    _utc,
    load_policy,
    parse_policy,
)

_EPS = 1e-12  # float noise allowed when comparing with the champion

__all__ = [
    "ApprovalRecord",
    "Approvals",
    "Checks",
    "FreezeWindow",
    "MetricRule",
    "Policy",
    "Rollback",
    "RuleResult",
    "Soak",
    "Tally",
    "TargetPolicy",
    "Verdict",
    "active_freeze",
    "check",
    "evaluate_approvals",
    "expiring_approvals",
    "load_policy",
    "parse_policy",
    "soak",
]


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
    failed = [
        _failed_expectation(r) for r in found[-1].get("results") or () if not r.get("success")
    ]
    detail = f": {'; '.join(failed)}" if failed else ""
    return RuleResult(
        rule, False, f"suite {name!r} failed ({bad} expectation(s) unsuccessful){detail}"
    )


def _failed_expectation(result: Mapping[str, Any]) -> str:
    """``type`` on column ``c``: what was observed (a validation report's result dict).

    Example:
        >>> _failed_expectation({"type": "expect_column_values_to_not_be_null",
        ...     "column": "ash", "observed": {"unexpected_count": 3}})
        'expect_column_values_to_not_be_null on column ash: 3 unexpected'
    """
    where = f" on column {result['column']}" if result.get("column") else ""
    obs = result.get("observed") or {}
    seen = []
    if "exception" in obs:
        seen.append(f"error {obs['exception']}"[:200])
    if obs.get("unexpected_count") is not None:
        seen.append(f"{obs['unexpected_count']} unexpected")
        sample = obs.get("partial_unexpected_list")
        if sample:
            seen.append(f"e.g. {sample[:3]}"[:120])
    if "observed_value" in obs:
        seen.append(f"observed {obs['observed_value']!r}"[:120])
    return f"{result.get('type', '?')}{where}: {', '.join(seen) or 'failed'}"


def _up(name: str, rule: MetricRule) -> bool:
    """The rule's direction; a rule built in Python without one uses the metric's."""
    if rule.greater_is_better is not None:
        return rule.greater_is_better
    known = direction(name)
    if known is None:
        raise PolicyError(
            f"MetricRule for {name!r} has no greater_is_better and {name!r} is not a known metric.",
            hint=f"Build it as MetricRule(..., greater_is_better=True) (or False) for {name!r}.",
        )
    return known


def _metric_failures(name: str, cand: float, champ: float | None, rule: MetricRule) -> list[str]:
    up = _up(name, rule)
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
    fails = _metric_failures(name, float(candidate), champion, rule)
    if fails:
        return RuleResult(key, False, f"{name}: " + "; ".join(fails))
    vs = f" vs champion {champion:g}" if champion is not None else " (no champion)"
    return RuleResult(key, True, f"{name} = {candidate:g}{vs}")


def _champion_scores(
    key: str, evaluation: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]] | RuleResult:
    if not evaluation:
        return RuleResult(key, False, "no evaluation in the evidence")
    metrics = evaluation.get("metrics") or {}
    champion = metrics.get("champion")
    if not champion:
        return RuleResult(key, True, "no champion holds the alias yet")
    return dict(metrics.get("candidate") or {}), dict(champion)


def _margin(name: str, rule: MetricRule, cand: float, champ: float) -> tuple[bool, str]:
    """Strictly better than ``champ`` by at least the rule's minimum change."""
    up = _up(name, rule)
    gain = cand - champ if up else champ - cand
    need = max(rule.min_absolute_change or 0.0, (rule.min_relative_change or 0.0) * abs(champ))
    if gain > need or (gain == need and need > 0):
        return True, f"{name} {cand:g} beats champion {champ:g} by {gain:g}"
    if gain == 0:
        return False, f"{name} {cand:g} ties champion {champ:g} (a tie does not beat it)"
    if gain < 0:
        return False, f"{name} {cand:g} is worse than champion {champ:g}"
    return False, f"{name} {cand:g} beats champion {champ:g} by {gain:g}, less than {need:g}"


def _check_beats(checks: Checks, evaluation: Mapping[str, Any] | None) -> RuleResult:
    """``must_beat_champion``: strictly better on every metric rule (or the champion's)."""
    key = "checks.must_beat_champion"
    scores = _champion_scores(key, evaluation)
    if isinstance(scores, RuleResult):
        return scores
    candidate, champion = scores
    rules = checks.metrics or {
        n: MetricRule(min_absolute_change=0.0) for n in champion if direction(n) is not None
    }
    worse, better = [], []
    for name, rule in rules.items():
        cand, champ = candidate.get(name), champion.get(name)
        if not isinstance(cand, int | float) or not isinstance(champ, int | float):
            worse.append(f"{name} not scored for both")
            continue
        ok, why = _margin(name, rule, float(cand), float(champ))
        (better if ok else worse).append(why)
    tail = " (must_beat_champion: strictly better by at least the minimum change)"
    if worse or not better:
        return RuleResult(key, False, ("; ".join(worse) or "no metric to compare") + tail)
    return RuleResult(key, True, "; ".join(better) + tail)


def _check_not_regress(checks: Checks, evaluation: Mapping[str, Any] | None) -> RuleResult:
    """``must_not_regress``: no metric scored for both is worse than the champion's."""
    key = "checks.must_not_regress"
    scores = _champion_scores(key, evaluation)
    if isinstance(scores, RuleResult):
        return scores
    candidate, champion = scores
    worse, compared = [], []
    for name in sorted(set(candidate) & set(champion)):
        cand, champ = candidate[name], champion[name]
        rule = checks.metrics.get(name)
        up = _up(name, rule) if rule is not None else direction(name)
        if up is None or not isinstance(cand, int | float) or not isinstance(champ, int | float):
            continue
        compared.append(name)
        if cand < champ - _EPS if up else cand > champ + _EPS:
            worse.append(f"{name} {cand:g} is worse than champion {champ:g}")
    tail = " (must_not_regress: no worse than the champion; a tie passes)"
    if worse:
        return RuleResult(key, False, "; ".join(worse) + tail)
    return RuleResult(key, True, "no worse on " + (", ".join(compared) or "no metric") + tail)


def _check_smoke(package: Mapping[str, Any] | None) -> RuleResult:
    key = "checks.smoke_test"
    smoke = (package or {}).get("smoke")
    if not smoke:
        return RuleResult(key, False, "no package smoke test in the evidence")
    if smoke.get("passed") is True:
        return RuleResult(key, True, f"smoke test passed on {smoke.get('rows', '?')} row(s)")
    why = smoke.get("error") or f"{smoke.get('mismatches', '?')} mismatching prediction(s)"
    return RuleResult(key, False, f"smoke test failed: {why}")


def check(
    evidence: Any,
    policy: Policy,
    target: str,
    *,
    now: datetime | None = None,
    model: str | None = None,
    held_since: datetime | bool | None = False,
) -> Verdict:
    """Judge an evidence bundle against the policy for ``target``; every rule says why.

    The rules are ``model``'s (default: the evidence's model name): the policy's defaults
    with that model's overrides (:meth:`Policy.rules`).

    Metric rules are recomputed from the evidence's raw numbers, never taken from the
    evaluation's own verdicts. With ``now``, an active freeze window fails rule ``freeze``.
    With ``held_since`` (when the version took the ladder's ``requires.held`` alias, or
    ``None`` if it does not hold it) and ``now``, a target with ``requires`` adds the rule
    ``requires.held`` (see :func:`soak`); the server passes it from its alias journal.

    Example:
        >>> p = parse_policy({"targets": {"prod": {"checks": {"smoke_test": True}}}})
        >>> check({}, p, "prod").failures[0].reason
        'no package smoke test in the evidence'
    """
    data = _as_dict(evidence)
    if model is None:
        model = (data.get("model") or {}).get("name")
    tp = policy.rules(model, target)
    if tp is None:
        known = ", ".join(sorted(policy.targets_for(model))) or "none"
        reason = f"target {target!r} is not in the policy (known: {known})"
        return Verdict(target, False, (RuleResult("target.known", False, reason),))
    rules = [RuleResult("target.known", True, f"{target} is known")]
    validations = [v for v in data.get("validation") or () if isinstance(v, Mapping)]
    evaluation = data.get("evaluation")
    rules += [_check_suite(s, validations) for s in tp.checks.suites]
    rules += [_check_metric(n, r, evaluation) for n, r in tp.checks.metrics.items()]
    if tp.checks.must_beat_champion:
        rules.append(_check_beats(tp.checks, evaluation))
    if tp.checks.must_not_regress:
        rules.append(_check_not_regress(tp.checks, evaluation))
    if tp.checks.smoke_test:
        rules.append(_check_smoke(data.get("package")))
    if now is not None:
        window = active_freeze(tp, now)
        reason = f"frozen until {window.end.isoformat()}: {window.reason}" if window else "open"
        rules.append(RuleResult("freeze", window is None, reason))
    step = soak(tp, held_since, now) if now is not None and held_since is not False else None
    if step is not None:
        rules.append(step.rule())
    return Verdict(target, all(r.passed for r in rules), tuple(rules))


# --- ladders ----------------------------------------------------------------------------
def _span(value: timedelta) -> str:
    """``1d2h3m4s`` (whole seconds; ``0s`` for nothing left).

    Example:
        >>> _span(timedelta(hours=25, seconds=4))
        '1d1h4s'
    """
    total = max(0, int(value.total_seconds() + 0.999))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class Soak:
    """How far a version is up a ladder step (``requires: {held: staging, for: 24h}``).

    ``since`` is when the version took ``held`` (``None``: it does not hold it now);
    ``left`` is the soak time still to go (zero once done).

    Example:
        >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
        >>> s = Soak("staging", timedelta(hours=24), t0, t0 + timedelta(hours=20))
        >>> s.done, s.left, s.rule().reason
        (False, datetime.timedelta(seconds=14400), 'held staging for 20h of 1d: 4h left')
    """

    held: str
    need: timedelta
    since: datetime | None
    now: datetime

    @property
    def holds(self) -> bool:
        """True while the version holds ``held``."""
        return self.since is not None

    @property
    def left(self) -> timedelta | None:
        """Soak time still to go; ``None`` when the version does not hold ``held``."""
        if self.since is None:
            return None
        return max(timedelta(0), self.need - (_utc(self.now) - _utc(self.since)))

    @property
    def done(self) -> bool:
        """True once the version has held ``held`` for the whole ``need``."""
        return self.left == timedelta(0)

    @property
    def until(self) -> datetime | None:
        """When the soak ends (``None``: not holding)."""
        return None if self.since is None else _utc(self.since) + self.need

    def rule(self) -> RuleResult:
        """The ``requires.held`` rule: passed once the soak is done."""
        if self.since is None:
            return RuleResult(
                "requires.held", False, f"does not hold {self.held!r}; promote it there first"
            )
        held_for = _utc(self.now) - _utc(self.since)
        if self.done:
            why = f"held {self.held} for {_span(held_for)} (needs {_span(self.need)})"
            return RuleResult("requires.held", True, why)
        why = f"held {self.held} for {_span(held_for)} of {_span(self.need)}: "
        return RuleResult("requires.held", False, why + f"{_span(self.left)} left")

    def to_dict(self) -> dict[str, Any]:
        """``{"held", "for_seconds", "since", "until", "left_seconds", "done"}``."""
        left = self.left
        return {
            "held": self.held,
            "for_seconds": self.need.total_seconds(),
            "since": self.since and _utc(self.since).isoformat(),
            "until": self.until and self.until.isoformat(),
            "left_seconds": None if left is None else left.total_seconds(),
            "done": self.done,
        }


def soak(target_policy: TargetPolicy, since: datetime | None, now: datetime) -> Soak | None:
    """The ladder step of ``target_policy`` for a version holding its alias since ``since``.

    ``None`` when the target has no ``requires``. The server reads ``since`` from its alias
    journal (when the version took the alias, if it still holds it).

    Example:
        >>> tp = parse_policy({"targets": {"prod": {"requires": {"held": "staging",
        ...     "for": "2s"}}}}).targets["prod"]
        >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
        >>> soak(tp, t0, t0 + timedelta(seconds=3)).done
        True
    """
    req = target_policy.requires
    if req is None:
        return None
    return Soak(req.held, req.for_, since, now)


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

    @property
    def identity(self) -> str:
        """The person behind ``user``, normalised: how the approval rules compare people.

        Example:
            >>> ApprovalRecord("Ci-Bot ", (), "approve", "d", datetime(2026, 1, 1)).identity
            'ci-bot'
        """
        return normalise_identity(self.user)


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
        return next((r for u, r in self.ignored if same_person(u, user)), None)

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
    if rules.exclude_requester and same_person(rec.user, requester):
        return "the requester may not approve their own request"
    if not set(rec.roles) & set(rules.roles):
        return f"roles {sorted(rec.roles)} hold none of {list(rules.roles)}"
    if rec.digest != digest:
        return f"approved evidence {rec.digest[:12]}, current is {digest[:12]}"
    if rules.ttl is not None and _utc(now) - _utc(rec.at) > rules.ttl:
        return f"older than the approval ttl ({rules.ttl})"
    return None


def expiring_approvals(
    target_policy: TargetPolicy, tally: Tally, approvals: Iterable[Any], *, now: datetime
) -> list[dict[str, Any]]:
    """Counted approvals that pass their ``ttl`` within the warning window.

    The window is the last quarter of the ttl: with ``ttl: 72h`` an approval warns in its last 18h.
    Each entry is ``{"user", "expires_at", "left_seconds"}``.

    Example:
        >>> tp = parse_policy({"targets": {"p": {"approvals": {"count": 2, "ttl": "4h"}}}}
        ...     ).targets["p"]
        >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
        >>> recs = [("ann", ("approver",), "approve", "d", t0)]
        >>> tally = evaluate_approvals(tp, recs, requester="bob", digest="d", now=t0)
        >>> [w["user"] for w in expiring_approvals(tp, tally, recs,
        ...     now=t0 + timedelta(hours=3, minutes=30))]
        ['ann']
    """
    ttl = target_policy.approvals.ttl
    if ttl is None:
        return []
    counted = list(tally.counted)
    out = []
    for rec in sorted((ApprovalRecord(*a) for a in approvals), key=lambda r: _utc(r.at)):
        if rec.user not in counted:
            continue
        counted.remove(rec.user)
        expires = _utc(rec.at) + ttl
        left = expires - _utc(now)
        if left <= ttl / 4:
            out.append(
                {
                    "user": rec.user,
                    "expires_at": expires.isoformat(),
                    "left_seconds": max(0.0, left.total_seconds()),
                }
            )
    return out


def evaluate_approvals(
    target_policy: TargetPolicy,
    approvals: Iterable[ApprovalRecord | tuple[Any, ...]],
    *,
    requester: str,
    digest: str,
    now: datetime,
) -> Tally:
    """Count the approvals that satisfy the policy (pure; the server calls it).

    Each approval is ``(user, roles, decision, digest, at)``. People are compared by
    normalised identity (:func:`mlops.identity.normalise_identity`): ``Ci-Bot`` is the
    requester ``ci-bot`` and counts once with ``ci-bot ``.

    Example:
        >>> tp = parse_policy({"targets": {"p": {"approvals": {"count": 1}}}}).targets["p"]
        >>> now = datetime(2026, 1, 1, tzinfo=UTC)
        >>> evaluate_approvals(tp, [("ann", ("approver",), "approve", "d", now)],
        ...                    requester="bob", digest="d", now=now).quorum
        True
    """
    return approval_reasons(target_policy, approvals, requester=requester, digest=digest, now=now)[
        1
    ]


def approval_reasons(
    target_policy: TargetPolicy,
    approvals: Iterable[ApprovalRecord | tuple[Any, ...]],
    *,
    requester: str,
    digest: str,
    now: datetime,
) -> tuple[list[str | None], Tally]:
    """:func:`evaluate_approvals`, and why each approval did not count (``None``: it counted).

    The reasons are in time order (a stable sort on ``at``: approvals passed in that order
    keep it). Approvals are judged one after the other, so the reason of the ``i``-th is
    the one it gets when only the first ``i + 1`` are evaluated: one pass gives what a
    request page shows for each approval.

    Example:
        >>> tp = parse_policy({"targets": {"p": {"approvals": {"count": 2}}}}).targets["p"]
        >>> now = datetime(2026, 1, 1, tzinfo=UTC)
        >>> recs = [("ann", ("approver",), "approve", "d", now),
        ...         ("Ann", ("approver",), "approve", "d", now)]
        >>> approval_reasons(tp, recs, requester="bob", digest="d", now=now)[0]
        [None, 'already counted once for this person']
    """
    counted: list[str] = []
    people: set[str] = set()
    ignored: list[tuple[str, str]] = []
    reasons: list[str | None] = []
    records = sorted((ApprovalRecord(*a) for a in approvals), key=lambda r: _utc(r.at))
    for rec in records:
        reason = _ignore_reason(rec, target_policy, requester, digest, now)
        person = rec.identity
        if reason is None and target_policy.approvals.distinct and person in people:
            reason = "already counted once for this person"
        if reason is None:
            counted.append(rec.user)
            people.add(person)
        else:
            ignored.append((rec.user, reason))
        reasons.append(reason)
    need = target_policy.approvals.count
    have = len(counted)
    return reasons, Tally(have, need, have >= need, tuple(counted), tuple(ignored))
