"""Promote a model version: build the evidence, check the policy, ask the gate.

:func:`promote` is the one-call path from a notebook. Each step is also a small public
function so a DVC pipeline stage can run them one at a time:

1. :func:`run_validation` - every required suite on the training data (GX).
2. :func:`run_evaluation` - candidate vs. the current holder of the target alias.
3. :func:`run_packaging` - a Bento plus a smoke test on a sample of the evaluation data.
4. :func:`build_evidence` - steps 1-3, collected and recorded on the model version.
5. :func:`precheck` - the policy verdict, computed locally; fails fast with every reason.
6. :func:`submit` - the promotion request to the registry server.

Example:
    >>> import mlops
    >>> handle = mlops.promote("churn", 3, to="production", target="churned")  # doctest: +SKIP
    >>> handle  # renders state, approvals and why it is blocked      # doctest: +SKIP
    >>> handle.wait(timeout=3600)  # until promoted, rejected, ...    # doctest: +SKIP
"""

from __future__ import annotations

import html
import time
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.client import FINAL_STATES, Promotion, RegistryClient
from mlops.errors import (
    ConfigError,
    DataError,
    EvaluationError,
    EvidenceError,
    MlopsError,
    PolicyError,
    PolicyViolation,
)

if TYPE_CHECKING:
    import pandas as pd

    from mlops.data import DatasetVersion
    from mlops.evaluation import EvaluationReport
    from mlops.evidence import Evidence
    from mlops.packaging import PackageReport
    from mlops.policy import Policy, Verdict
    from mlops.validation import Suite, ValidationReport

__all__ = [
    "PromotionHandle",
    "PromotionTimeout",
    "build_evidence",
    "precheck",
    "promote",
    "push_data",
    "resolve_policy",
    "run_evaluation",
    "run_packaging",
    "run_validation",
    "submit",
]

DIGEST_TAG = "mlops.evidence.digest"
#: set on a version whose promote() stopped at a failing suite: what blocked it
BLOCKED_TAG = "mlops.evidence.blocked"
_SAMPLE_ROWS = 5


class PromotionTimeout(MlopsError, TimeoutError):
    """:meth:`PromotionHandle.wait` ran out of time before a final state."""

    code = "promotion_timeout"
    default_hint = "Wait longer, or look at `mlops status ID` to see what blocks the request."


# --- policy ---------------------------------------------------------------------------------
def resolve_policy(policy: Policy | Mapping[str, Any] | str | Path | None = None) -> Policy:
    """A :class:`~mlops.policy.Policy` from a Policy, a mapping, a path, or the settings.

    Example:
        >>> resolve_policy({"targets": {"staging": {}}}).targets["staging"].protected
        False
    """
    from mlops import policy as _policy

    if policy is None or isinstance(policy, str | Path):
        return _policy.load_policy(policy)
    if isinstance(policy, Mapping):
        return _policy.parse_policy(policy)
    return policy


def precheck(evidence: Evidence | Mapping[str, Any], policy: Policy, to: str) -> Verdict:
    """Judge the evidence locally; raise :class:`PolicyViolation` listing every failed rule.

    The verdict is attached to the error as ``.verdict`` (and returned when it passes).

    Example:
        >>> verdict = precheck(evidence, policy, "production")  # doctest: +SKIP
    """
    from mlops.policy import check

    verdict = check(evidence, policy, to, now=datetime.now(UTC))
    if not verdict.passed:
        raise _violation(verdict, _model_of(evidence))
    return verdict


def push_data(evidence: Evidence | Mapping[str, Any], policy: Policy, to: str) -> int:
    """Push the data the registry server will re-derive ``evidence`` from to the DVC remote.

    When the policy has the server verify the evidence for ``to`` (``verify:``), the server
    fetches the data by md5 from the DVC remote; this sends those objects there from the
    DVC cache of the repository each dataset was recorded in (repositories not on this
    machine are left to their owners). Returns how many objects were sent; 0 when the
    target verifies nothing or the remote already had everything.

    Example:
        >>> push_data(bundle, resolve_policy("promotion-policy.yaml"), "production")
        ... # doctest: +SKIP
        2
    """
    from mlops import data
    from mlops.evidence import pinned_datasets

    doc = evidence if isinstance(evidence, Mapping) else evidence.to_dict()
    rules = policy.rules((doc.get("model") or {}).get("name"), to)
    if rules is None or not rules.verify:
        return 0
    by_repo: dict[str, set[str]] = {}
    for ds in pinned_datasets(doc, rules.verify):
        if ds.get("repo") and Path(ds["repo"]).is_dir():
            by_repo.setdefault(str(ds["repo"]), set()).add(str(ds["md5"]))
    return sum(data.push(md5s, repo=repo) for repo, md5s in sorted(by_repo.items()))


def _model_of(evidence: Any) -> str:
    data = evidence if isinstance(evidence, Mapping) else evidence.to_dict()
    model = data.get("model") or {}
    return f"{model.get('name', '?')} v{model.get('version', '?')}"


def _violation(verdict: Verdict, what: str) -> PolicyViolation:
    failures = verdict.failures
    reasons = "; ".join(f"{r.rule}: {r.reason}" for r in failures)
    err = PolicyViolation(
        f"{what} cannot be promoted to {verdict.target!r}: {len(failures)} rule(s) failed: "
        f"{reasons}.",
        failures=[r.to_dict() for r in failures],
    )
    err.verdict = verdict  # type: ignore[attr-defined]
    return err


# --- the evidence steps ---------------------------------------------------------------------
def _training_data(name: str, version: int) -> DatasetVersion:
    from mlops.registry import lineage

    datasets = lineage(name, version).datasets
    if not datasets:
        raise DataError(
            f"Model {name!r} version {version} names no dataset in its lineage.",
            hint="Pass data= (a DatasetVersion or DataFrame), or train inside "
            "mlops.start_run(datasets=[...]) so the version records its data.",
        )
    return datasets[0]


def run_validation(
    name: str,
    version: int,
    *,
    suites: Sequence[Suite | str | Path],
    data: DatasetVersion | pd.DataFrame | None = None,
) -> list[ValidationReport]:
    """Validate ``data`` (default: the version's training data) with every suite.

    Each report (JSON) and its Data Docs page are logged on the version's run under
    ``mlops/validation/<suite>.*``, passed or failed, so a block can be read later.

    Example:
        >>> reports = run_validation("churn", 3, suites=["churn_train"])  # doctest: +SKIP
        >>> [r.success for r in reports]  # doctest: +SKIP
        [True]
    """
    from mlops.registry import get
    from mlops.validation import validate

    if not suites:
        return []
    data = _training_data(name, version) if data is None else data
    run_id = get(name, version).run_id  # reports and Data Docs land on the candidate's run
    return [
        validate(data, suite, raise_on_failure=False, log=True, run_id=run_id) for suite in suites
    ]


def run_evaluation(
    name: str,
    version: int,
    *,
    to: str,
    data: DatasetVersion | pd.DataFrame,
    target: str | None,
    policy: Policy | None = None,
) -> EvaluationReport:
    """Score the candidate against the holder of alias ``to`` with the policy's thresholds.

    Example:
        >>> run_evaluation("churn", 3, to="production", data=ds, target="churned")  # doctest: +SKIP
    """
    from mlops.evaluation import MetricThreshold, evaluate

    if not target:
        raise ConfigError(
            "Evaluation needs the name of the label column, got target=None.",
            hint="Pass target='<label column>' to promote() / run_evaluation().",
        )
    thresholds = None
    tp = policy.rules(name, to) if policy is not None else None
    if tp is not None:
        rules = tp.checks.metrics
        thresholds = {m: MetricThreshold(**r.model_dump()) for m, r in rules.items()} or None
    try:
        return evaluate(name, version, data=data, target=target, champion=to, thresholds=thresholds)
    except EvaluationError as exc:
        unknown = exc.details.get("unknown_metrics")
        if not unknown or policy is None:
            raise
        raise _policy_metric_error(policy, name, to, unknown, exc) from exc


def _policy_metric_error(
    policy: Policy, name: str, to: str, unknown: list[str], exc: EvaluationError
) -> PolicyError:
    """The policy named a metric this evaluation does not compute: say where it is written."""
    where = policy.explain(name, to).get("checks.metrics", f"targets.{to}.checks.metrics")
    paths = [f"{where}.{metric}" for metric in unknown]
    computed = ", ".join(exc.details.get("computed_metrics") or ())
    return PolicyError(
        f"The policy for {name!r} -> {to!r} names metric(s) {unknown} that the evaluation "
        f"does not compute (it computes {computed}).",
        hint=f"Fix {paths[0]} in promotion-policy.yaml (or add a per-model scope under "
        f"models.{name} for this model's metrics).",
        keys=paths,
    )


def run_packaging(
    name: str,
    version: int,
    *,
    sample: pd.DataFrame | None = None,
    data: DatasetVersion | pd.DataFrame | None = None,
    target: str | None = None,
) -> PackageReport:
    """Build a Bento and smoke-test it on ``sample`` (default: head of ``data`` w/o target).

    Example:
        >>> run_packaging("churn", 3, sample=df.head(5)).passed  # doctest: +SKIP
        True
    """
    from mlops.packaging import package

    if sample is None:
        if data is None:
            raise ConfigError(
                "Packaging needs sample rows to smoke-test the Bento, got sample=None and no data.",
                hint="Pass sample=<DataFrame of model inputs> or eval_data= to promote().",
            )
        sample = _sample_from(data, target)
    return package(name, version, sample=sample, smoke=True)


def _sample_from(data: DatasetVersion | pd.DataFrame, target: str | None) -> pd.DataFrame:
    frame = data
    if not hasattr(frame, "head"):
        from mlops.data import read_dataframe

        frame = read_dataframe(data)
    frame = frame.head(_SAMPLE_ROWS)
    if target and target in frame.columns:
        frame = frame.drop(columns=[target])
    return frame.reset_index(drop=True)


def build_evidence(
    name: str,
    version: int,
    *,
    to: str,
    data: DatasetVersion | pd.DataFrame | None = None,
    eval_data: DatasetVersion | pd.DataFrame | None = None,
    target: str | None = None,
    suites: Sequence[Suite | str | Path] = (),
    sample: pd.DataFrame | None = None,
    policy: Policy | Mapping[str, Any] | str | Path | None = None,
) -> Evidence:
    """Validate, evaluate and package, then collect and record the evidence bundle.

    Suites default to the policy's ``checks.suites`` for ``to``. A required suite that
    fails stops here with :class:`PolicyViolation`, before the (slow) evaluation and
    packaging. The recorded bundle's digest is tagged on the model version.

    Example:
        >>> ev = build_evidence("churn", 3, to="prod", eval_data=ds, target="y")  # doctest: +SKIP
        >>> ev.digest                                                               # doctest: +SKIP
    """
    from mlops import evidence as _evidence

    pol = resolve_policy(policy)
    tp = pol.target(to, name)
    suites = tuple(suites) or tp.checks.suites
    reports = run_validation(name, version, suites=suites, data=data)
    _fail_fast_on_suites(name, version, to, reports, pol)
    if eval_data is None:
        eval_data = data if data is not None else _training_data(name, version)
        warnings.warn(
            f"promote({name!r}, {version}) got no eval_data; evaluating on the training data.",
            stacklevel=3,
        )
    evaluation = run_evaluation(name, version, to=to, data=eval_data, target=target, policy=pol)
    pkg = run_packaging(name, version, sample=sample, data=eval_data, target=target)
    bundle = _evidence.collect(
        name, version, validation=reports, evaluation=evaluation, package=pkg
    )
    _evidence.record(bundle)
    return bundle


def _fail_fast_on_suites(
    name: str, version: int, to: str, reports: list[ValidationReport], policy: Policy
) -> None:
    from mlops.policy import Verdict, check

    verdict = check({"validation": [r.to_dict() for r in reports]}, policy, to, model=name)
    early = tuple(r for r in verdict.rules if r.rule.startswith(("checks.suites.", "target.")))
    if not all(r.passed for r in early):
        from mlops.registry import set_tag

        blocked = Verdict(to, False, early)
        why = "; ".join(f"{r.rule}: {r.reason}" for r in blocked.failures)
        set_tag(name, version, BLOCKED_TAG, f"{to}: {why}"[:5000])
        raise _violation(blocked, f"{name} v{version}")


# --- the request --------------------------------------------------------------------------
def submit(
    name: str,
    version: int,
    *,
    to: str,
    digest: str | None = None,
    client: RegistryClient | None = None,
) -> PromotionHandle:
    """Ask the registry server to move alias ``to`` to this version.

    ``digest`` defaults to the version's ``mlops.evidence.digest`` tag. A ``client``
    passed in stays open (whoever made it closes it) and the handle keeps using it.
    Without one, a client is built from ``MLOPS_REGISTRY_URL``/``MLOPS_TOKEN`` and closed
    before this returns, also when the server refuses; the handle then opens a
    short-lived one for each :meth:`PromotionHandle.refresh`.

    Example:
        >>> handle = submit("churn", 3, to="production")   # doctest: +SKIP
        >>> handle.state                                    # doctest: +SKIP
        'pending'
    """
    digest = digest or recorded_digest(name, version)
    if client is not None:
        return PromotionHandle(client, client.request_promotion(name, version, to, digest))
    with RegistryClient() as own:
        promotion = own.request_promotion(name, version, to, digest)
    return PromotionHandle(None, promotion)


def recorded_digest(name: str, version: int) -> str:
    """The evidence digest tagged on a model version (:class:`EvidenceError` if none).

    Example:
        >>> recorded_digest("churn", 3)                     # doctest: +SKIP
        '9f2c...'
    """
    from mlops.registry import get

    mv = get(name, int(version))
    digest = mv.tags.get(DIGEST_TAG)
    if not digest and mv.tags.get(BLOCKED_TAG):
        raise EvidenceError(
            f"Model {name!r} version {version} has no recorded evidence: promote() was "
            f"blocked before recording it ({mv.tags[BLOCKED_TAG]}).",
            hint=f"Read the failed expectations in run {mv.run_id} (artifacts "
            "mlops/validation/<suite>.json and .html), fix the data or the suite, then run "
            "mlops.promote(...) again.",
        )
    if not digest:
        raise EvidenceError(
            f"Model {name!r} version {version} has no recorded evidence (tag {DIGEST_TAG!r}).",
            hint="Build it first: mlops.promote(..., submit=False) or "
            "mlops.promotion.build_evidence(...).",
        )
    return digest


def promote(
    name: str,
    version: int,
    *,
    to: str,
    data: DatasetVersion | pd.DataFrame | None = None,
    eval_data: DatasetVersion | pd.DataFrame | None = None,
    target: str | None = None,
    suites: Sequence[Suite | str | Path] = (),
    sample: pd.DataFrame | None = None,
    policy: Policy | Mapping[str, Any] | str | Path | None = None,
    client: RegistryClient | None = None,
    submit: bool = True,
) -> PromotionHandle:
    """Build and record the evidence, check the policy locally, and request the promotion.

    Args:
        name, version: the registered model version.
        to: the target alias (e.g. ``"production"``).
        data: data to validate (default: the training data from the version's lineage).
        eval_data: data to evaluate and smoke-test on (default: ``data``).
        target: the label column of ``eval_data``.
        suites: suites to run (default: the policy's ``checks.suites`` for ``to``).
        sample: rows for the Bento smoke test (default: head of ``eval_data``).
        policy: a Policy, mapping or path (default: ``MLOPS_POLICY_PATH``).
        client: the registry client (default: from ``MLOPS_REGISTRY_URL``/``MLOPS_TOKEN``).
        submit: ``False`` stops after the local verdict (nothing sent to the server).

    Raises:
        PolicyViolation: a rule failed; ``err.verdict`` lists every rule and why.

    Example:
        >>> h = mlops.promote("churn", 3, to="prod", eval_data=ds, target="y")  # doctest: +SKIP
        >>> h.state, h.blocked_by                                                   # doctest: +SKIP
        ('pending', ('needs 2 approvals, has 0',))
    """
    pol = resolve_policy(policy)
    bundle = build_evidence(
        name,
        version,
        to=to,
        data=data,
        eval_data=eval_data,
        target=target,
        suites=suites,
        sample=sample,
        policy=pol,
    )
    verdict = precheck(bundle, pol, to)
    handle = PromotionHandle(client, None, verdict=verdict, evidence=bundle)
    if submit:
        push_data(bundle, pol, to)  # the server re-derives from it when the policy says so
        handle.submit(name, version, to=to)
        if handle.state == "verifying":  # the server re-derives the evidence first
            handle.wait_verified()
    return handle


class PromotionHandle:
    """A promotion request in flight: state, approvals and why it is blocked.

    Example:
        >>> handle = mlops.promote("churn", 3, to="production", target="y")  # doctest: +SKIP
        >>> print(handle)                                                    # doctest: +SKIP
        promotion #1: churn v3 -> production [pending] ...
        >>> handle.wait(timeout=600).state                                   # doctest: +SKIP
        'promoted'
    """

    def __init__(
        self,
        client: RegistryClient | None,
        promotion: Promotion | None,
        *,
        verdict: Verdict | None = None,
        evidence: Evidence | None = None,
    ) -> None:
        self.client = client
        self.promotion = promotion
        self.verdict = verdict
        self.evidence = evidence

    @property
    def id(self) -> int | str | None:
        """The server's request id (``None`` until submitted)."""
        return self.promotion.id if self.promotion else None

    @property
    def state(self) -> str:
        """The request state, or ``"not submitted"``."""
        return self.promotion.state if self.promotion else "not submitted"

    @property
    def blocked_by(self) -> tuple[str, ...]:
        """What keeps the request from moving on, in the server's words."""
        return self.promotion.blocked_by if self.promotion else ()

    @property
    def final(self) -> bool:
        """True once the request reached promoted/rejected/cancelled/expired/superseded."""
        return self.state in FINAL_STATES

    def submit(self, name: str, version: int, *, to: str) -> PromotionHandle:
        """Send the request (used by ``promote(..., submit=False)`` callers later)."""
        digest = self.evidence.digest if self.evidence is not None else None
        done = submit(name, version, to=to, digest=digest, client=self.client)
        self.client, self.promotion = done.client, done.promotion
        return self

    def refresh(self) -> PromotionHandle:
        """Re-read the request from the server (with a short-lived client if none was given)."""
        promotion_id = self._id()
        if self.client is not None:
            self.promotion = self.client.get_promotion(promotion_id)
            return self
        with RegistryClient() as client:
            self.promotion = client.get_promotion(promotion_id)
        return self

    def wait_verified(self, *, timeout: float = 120.0, interval: float = 0.5) -> PromotionHandle:
        """Poll while the server re-derives the evidence (state ``verifying``).

        Afterwards the request is ``pending`` (verified: approvals count now) or
        ``rejected`` (``self.promotion.verification`` names what differs).
        :class:`PromotionTimeout` after ``timeout`` seconds.

        Example:
            >>> handle.wait_verified().state                               # doctest: +SKIP
            'pending'
        """
        deadline = time.monotonic() + timeout
        while self.refresh().state == "verifying":
            if time.monotonic() >= deadline:
                raise PromotionTimeout(
                    f"Promotion #{self.id} is still verifying after {timeout:g}s.",
                    promotion_id=self.id,
                )
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
        return self

    def wait(self, *, timeout: float = 600.0, interval: float = 2.0) -> PromotionHandle:
        """Poll until a final state; :class:`PromotionTimeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.refresh().final:
            if time.monotonic() >= deadline:
                why = "; ".join(self.blocked_by) or "no reason given"
                raise PromotionTimeout(
                    f"Promotion #{self.id} is still {self.state!r} after {timeout:g}s ({why}).",
                    promotion_id=self.id,
                )
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the request, the local verdict and the evidence digest."""
        return {
            "promotion": self.promotion.to_dict() if self.promotion else None,
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "evidence_digest": self.evidence.digest if self.evidence is not None else None,
        }

    def __repr__(self) -> str:
        return f"<PromotionHandle id={self.id!r} state={self.state!r}>"

    def __str__(self) -> str:
        if self.promotion is not None:
            return str(self.promotion)
        digest = self.evidence.digest[:12] if self.evidence is not None else "-"
        verdict = f"\n{self.verdict}" if self.verdict else ""
        return f"not submitted (evidence {digest}){verdict}"

    def _repr_html_(self) -> str:
        if self.promotion is not None:
            return self.promotion._repr_html_()
        digest = self.evidence.digest[:12] if self.evidence is not None else "-"
        head = f"<div><strong>Not submitted</strong> (evidence {html.escape(digest)})</div>"
        return head + (self.verdict._repr_html_() if self.verdict else "")

    def _id(self) -> int | str:
        if self.promotion is None:
            raise ConfigError(
                "This promotion was not submitted yet, so it has no state on the server.",
                hint="Call handle.submit(name, version, to=...) or promote(..., submit=True).",
            )
        return self.promotion.id
