"""Stage ``request``: record the evidence, pre-check the policy, ask for the promotion.

The evidence bundle (lineage from the registry + the validation, evaluation and package
reports of this run) is recorded on the model version; the policy is checked locally
(``mlops.promotion.precheck``, the rules the registry server applies); if it passes, a
promotion request goes to the server (``mlops.promotion.submit``: ``MLOPS_REGISTRY_URL``,
token ``MLOPS_TOKEN``). When the policy has the server re-derive the evidence for the
target (``verify:``), the data it names is pushed to the DVC remote first
(``mlops.promotion.push_data``), so the server finds it without waiting for ``dvc push``.

Reruns: the stage has no ``always_changed``; it depends only on the reports, the policy
and its params, so ``dvc repro`` reruns it exactly when the evidence (or the policy)
changed. A forced rerun (``dvc repro -f``) sends a new request; the server supersedes the
older pending one for the same model and target. ``reports/promotion.json`` is the state
at submission time: ask the server for the current state (``mlops status <id>``).

Experiments never submit by themselves: inside ``dvc exp run`` (workspace, ``--temp`` or
``--queue``: DVC sets ``DVC_EXP_NAME``) the evidence is recorded and pre-checked, and
``reports/promotion.json`` names the experiment, but nothing is sent unless
``promotion.submit_experiments`` is true. Pick the experiment to review afterwards with
``mlops request --from-exp NAME``.

Params: ``promotion.target`` (alias, e.g. ``production``), ``promotion.submit`` (false:
record and pre-check only), ``promotion.submit_experiments`` (true: experiments submit
too), ``promotion.fail_if_blocked`` (exit 1 when the policy says no).
Output: ``reports/promotion.json``.

Example:
    >>> summary(model, digest="ab" * 32, verdict={"passed": False, "rules": []},
    ...         promotion=None)["state"]  # doctest: +SKIP
    'blocked'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import PolicyViolation
from pipelines import _common

if TYPE_CHECKING:
    from mlops.policy import Verdict

MODEL_JSON = Path("reports/model.json")
VALIDATION_JSON = Path("reports/validation.json")
EVALUATION_JSON = Path("reports/evaluation.json")
PACKAGE_JSON = Path("reports/package.json")
POLICY_YAML = Path("promotion-policy.yaml")
PROMOTION_JSON = Path("reports/promotion.json")


def summary(
    model: dict[str, Any],
    *,
    target: str,
    digest: str,
    verdict: dict[str, Any],
    promotion: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``reports/promotion.json`` document.

    ``state`` is the server's state of the request, ``blocked`` when the local policy check
    failed (nothing was sent) or ``not_submitted`` when submission is switched off.

    Example:
        >>> summary({"name": "iris", "version": 2}, target="production", digest="d",
        ...         verdict={"passed": True, "rules": []},
        ...         promotion={"id": 7, "state": "pending", "quorum": {"have": 0, "need": 2},
        ...                    "blocked_by": ["needs 2 approvals"]})["id"]
        7
    """
    doc: dict[str, Any] = {
        "model": model["name"],
        "version": model["version"],
        "target": target,
        "evidence_digest": digest,
        "verdict": verdict,
        "submitted": promotion is not None,
        "id": None,
        "state": "blocked" if not verdict["passed"] else "not_submitted",
        "quorum": None,
        "blocked_by": [f"{r['rule']}: {r['reason']}" for r in verdict["rules"] if not r["passed"]],
    }
    if promotion is not None:
        doc.update(
            id=promotion["id"],
            state=promotion["state"],
            quorum=promotion.get("quorum"),
            blocked_by=list(promotion.get("blocked_by") or ()),
        )
    return doc


def record_evidence(model: dict[str, Any], reports: dict[str, Any]) -> Any:
    """Collect this run's reports into an evidence bundle and record it on the version.

    Example:
        >>> record_evidence(model, {"validation": v, "evaluation": e, "package": p}).digest
        ... # doctest: +SKIP
    """
    from mlops import evidence
    from mlops.registry import get
    from mlops.validation import ValidationReport, log_report

    # the reviewer page links the Data Docs logged on the model's run: put them there
    run_id = get(model["name"], model["version"]).run_id
    if run_id:
        log_report(ValidationReport.from_dict(reports["validation"]), run_id=run_id)
    bundle = evidence.collect(
        model["name"],
        model["version"],
        validation=(reports["validation"],),
        evaluation=reports["evaluation"],
        package=reports["package"],
    )
    evidence.record(bundle)
    return bundle


def local_verdict(bundle: Any, policy: Any, target: str) -> Verdict:
    """The policy verdict on the evidence (``mlops.promotion.precheck``), passed or not.

    Example:
        >>> local_verdict(bundle, load_policy("promotion-policy.yaml"), "production").passed
        ... # doctest: +SKIP
        True
    """
    from mlops.promotion import precheck

    try:
        return precheck(bundle, policy, target)
    except PolicyViolation as exc:
        return exc.verdict  # type: ignore[attr-defined]  # precheck attaches every rule


def mark_bento(model: dict[str, Any], package: dict[str, Any], *, passed: bool) -> None:
    """Tag the version with its Bento (``mlops.bento``); discard the Bento of a blocked one.

    ``mlops versions MODEL`` then shows which Bento each version has, and ``bentoml list``
    holds no Bento the policy already refused.

    Example:
        >>> mark_bento({"name": "iris", "version": 3}, {"bento_tag": "iris:v3-ab"},
        ...            passed=False)  # doctest: +SKIP
    """
    from mlops import registry
    from mlops.packaging import discard

    tag = package.get("bento_tag")
    if not tag:
        return
    if passed:
        registry.set_tag(model["name"], model["version"], "mlops.bento", tag)
    else:
        discard(tag)
        registry.set_tag(model["name"], model["version"], "mlops.bento", f"{tag} (discarded)")


def experiment_name(environ: Mapping[str, str] = os.environ) -> str | None:
    """The DVC experiment this stage runs in, or ``None`` for a workspace ``dvc repro``.

    ``dvc exp run`` (in the workspace, ``--temp`` or ``--queue``) sets ``DVC_EXP_NAME`` and
    ``DVC_EXP_BASELINE_REV`` for every stage it runs; ``dvc repro`` sets neither.

    Example:
        >>> experiment_name({"DVC_EXP_NAME": "dashing-bolt"}), experiment_name({})
        ('dashing-bolt', None)
    """
    name = environ.get("DVC_EXP_NAME") or None
    if name is None and environ.get("DVC_EXP_BASELINE_REV"):
        return environ["DVC_EXP_BASELINE_REV"][:7]
    return name


def should_submit(p: Mapping[str, Any], experiment: str | None) -> bool:
    """Submit from a workspace run when ``promotion.submit``; from an experiment only when
    ``promotion.submit_experiments`` is true too (a sweep must not flood the review queue).

    Example:
        >>> should_submit({"submit": True}, None), should_submit({"submit": True}, "exp-1")
        (True, False)
        >>> should_submit({"submit": True, "submit_experiments": True}, "exp-1")
        True
    """
    if not _common.need(dict(p), "submit", bool, where="promotion"):
        return False
    if experiment is None:
        return True
    return bool(_common.need({"submit_experiments": False, **p}, "submit_experiments", bool,
                             where="promotion"))  # fmt: skip


def main() -> None:
    """Record evidence, check the policy, submit; write ``reports/promotion.json``.

    Example:
        $ python -m pipelines.request   # what `dvc repro` runs, from the repository root
    """
    from mlops import promotion

    _common.at_root()
    p, model = _common.params("promotion"), _common.read_json(MODEL_JSON)
    target = _common.need(p, "target", str, where="promotion")
    reports = {
        "validation": _common.read_json(VALIDATION_JSON),
        "evaluation": _common.read_json(EVALUATION_JSON),
        "package": _common.read_json(PACKAGE_JSON),
    }
    bundle = record_evidence(model, reports)
    policy = promotion.resolve_policy(POLICY_YAML)
    verdict = local_verdict(bundle, policy, target)
    sent, experiment = None, experiment_name()
    mark_bento(model, reports["package"], passed=verdict.passed)
    if verdict.passed and should_submit(p, experiment):
        pushed = promotion.push_data(bundle, policy, target)  # the server re-derives from it
        if pushed:
            print(f"request: pushed {pushed} data object(s) to the DVC remote for verification")
        handle = promotion.submit(model["name"], model["version"], to=target, digest=bundle.digest)
        sent = handle.promotion.to_dict()
    doc = summary(
        model, target=target, digest=bundle.digest, verdict=verdict.to_dict(), promotion=sent
    )
    doc["experiment"] = experiment
    _common.write_json(PROMOTION_JSON, doc)
    print(
        f"request: {model['name']} v{model['version']} -> {target}: {doc['state']}"
        + (f" (request #{doc['id']})" if doc["id"] is not None else "")
    )
    for reason in doc["blocked_by"]:
        print(f"  blocked by {reason}")
    if verdict.passed and sent is None and experiment:
        print(f"  experiment {experiment!r} not submitted: mlops request --from-exp {experiment}")
    if not verdict.passed and _common.need(p, "fail_if_blocked", bool, where="promotion"):
        raise PolicyViolation(
            f"{model['name']} v{model['version']} may not be promoted to {target!r}: "
            + "; ".join(doc["blocked_by"])
            + ".",
            hint=f"Read {PROMOTION_JSON}; improve the model or the data, then `dvc repro`.",
        )


if __name__ == "__main__":
    raise SystemExit(_common.run(main))
