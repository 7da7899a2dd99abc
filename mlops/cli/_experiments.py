"""Turn a DVC experiment into a promotion request (``mlops request --from-exp NAME``).

An experiment (``dvc exp run``) trains, registers, packages and records evidence, but
never submits (see ``pipelines/request.py``): a sweep must not flood the review queue.
Its commit keeps ``reports/promotion.json`` (model, version, target, evidence digest),
which is all a request needs.

Example:
    >>> experiment_request("dashing-bolt")  # doctest: +SKIP
    ExperimentRequest(model='iris-classifier', version=3, target='production', digest='9f2c...')
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mlops.errors import ConfigError, NotFoundError

PROMOTION_JSON = "reports/promotion.json"


@dataclass(frozen=True)
class ExperimentRequest:
    """What an experiment's request stage recorded: the request it did not send."""

    model: str
    version: int
    target: str
    digest: str


def experiment_request(name: str, *, repo: str | None = None) -> ExperimentRequest:
    """Read ``reports/promotion.json`` at the experiment ``name`` (a name or a rev).

    Example:
        >>> experiment_request("dashing-bolt").version  # doctest: +SKIP
        3
    """
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        text = dvc.api.read(PROMOTION_JSON, repo=repo, rev=name)
    except FileNotFoundError as exc:
        raise NotFoundError(
            f"Experiment {name!r} has no {PROMOTION_JSON}: its request stage did not run.",
            experiment=name,
        ) from exc
    except DvcException as exc:
        raise NotFoundError(
            f"No DVC experiment or revision {name!r} here: {exc}.", experiment=name
        ) from exc
    doc = json.loads(text)
    if not doc.get("evidence_digest") or not doc.get("verdict", {}).get("passed", False):
        raise ConfigError(
            f"Experiment {name!r} ({doc.get('model')} v{doc.get('version')}) did not pass the "
            f"policy pre-check: {'; '.join(doc.get('blocked_by') or ()) or 'no evidence'}.",
            experiment=name,
        )
    return ExperimentRequest(
        model=str(doc["model"]),
        version=int(doc["version"]),
        target=str(doc["target"]),
        digest=str(doc["evidence_digest"]),
    )
