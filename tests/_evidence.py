"""Evidence bundles for tests, built in one place.

``bundle()`` is a schema-1 bundle with every section (model, lineage, validation,
evaluation, package) shaped as ``mlops.evidence.collect`` assembles it; keywords vary
what tests vary (the metric, a failing suite or smoke test, lineage, a champion).
``detailed=True`` fills the reports the way a real run does (GX results, the dataset on
each report, a second metric and its verdicts), for the pages that render them.

``record()`` writes a bundle into MLflow the way ``mlops.evidence.record`` does (the
artifact in the version's run, the digest and path tags on the version), for tests that
need bytes the library would refuse to write: another run's evidence, a tampered file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

DATASET = {
    "path": "data/iris.csv",
    "md5": "5ba2c4a1b5c4cd5e3a3f54ea2bb1b4d1",
    "rev": "3f2a9c0d1e4b5a69788f0a1b2c3d4e5f60718293",
    "remote": "/srv/dvc-remote",
    "repo": "/work/iris",
    "size": 2771,
    "nfiles": None,
}
GIT_COMMIT = "9d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796"
GX_RESULTS = (
    {
        "type": "expect_column_values_to_not_be_null",
        "column": "sepal length (cm)",
        "kwargs": {"column": "sepal length (cm)"},
        "success": True,
        "observed": {},
    },
    {
        "type": "expect_column_values_to_be_in_set",
        "column": "target",
        "kwargs": {"column": "target", "value_set": [0, 1, 2]},
        "success": True,
        "observed": {},
    },
)


def canonical(obj: Any) -> bytes:
    """The canonical JSON bytes the evidence digest is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_of(obj: Any) -> str:
    return hashlib.sha256(canonical(obj)).hexdigest()


def bundle(
    name: str,
    version: int,
    run_id: str | None = None,
    *,
    accuracy: float = 0.95,
    champion: Mapping[str, float] | None = None,
    champion_version: int | None = None,
    champion_run_id: str | None = None,
    suite: str = "iris_train",
    suite_ok: bool = True,
    smoke_ok: bool = True,
    datasets: Sequence[Mapping[str, Any]] = (),
    git_commit: str | None = None,
    validation: bool = True,
    package: bool = True,
    detailed: bool = False,
) -> dict[str, Any]:
    """A schema-1 evidence bundle for version ``version`` of ``name``.

    ``champion`` is the champion's metrics (``None``: no champion). ``validation=False``
    leaves the validation list empty, ``package=False`` the package section ``None``.
    """
    dataset = dict(datasets[0]) if detailed and datasets else None
    return {
        "schema": 1,
        "model": {"name": name, "version": version, "run_id": run_id},
        "lineage": {"git_commit": git_commit, "datasets": [dict(d) for d in datasets]},
        "validation": [_validation(suite, suite_ok, dataset, detailed)] if validation else [],
        "evaluation": _evaluation(
            name,
            version,
            accuracy,
            champion,
            (champion_version, champion_run_id),
            dataset,
            detailed,
        ),
        "package": _package(name, version, smoke_ok, detailed) if package else None,
    }


def _validation(suite: str, ok: bool, dataset: Any, detailed: bool) -> dict[str, Any]:
    results = [dict(r) for r in GX_RESULTS] if detailed else []
    return {
        "suite": suite,
        "success": ok,
        "statistics": {
            "evaluated": 2,
            "successful": 2 if ok else 1,
            "unsuccessful": 0 if ok else 1,
            "success_percent": 100.0 if ok else 50.0,
        },
        "results": results,
        "dataset": dataset,
        "rows": 150,
        "digest": hashlib.sha256(suite.encode()).hexdigest() if detailed else "0" * 64,
    }


def _evaluation(
    name: str,
    version: int,
    accuracy: float,
    champion: Mapping[str, float] | None,
    holder: tuple[int | None, str | None],
    dataset: Any,
    detailed: bool,
) -> dict[str, Any]:
    champion_version, champion_run_id = holder
    candidate = {"accuracy": accuracy}
    verdicts: list[dict[str, Any]] = []
    if detailed:
        candidate["f1_macro"] = accuracy - 0.01
        champ_accuracy = champion["accuracy"] if champion else None
        verdicts = [
            {
                "metric": "accuracy",
                "candidate": accuracy,
                "champion": champ_accuracy,
                "passed": True,
                "reasons": [],
            }
        ]
    return {
        "model": name,
        "candidate_version": version,
        "champion_alias": "production",
        "champion_version": champion_version,
        "champion_run_id": champion_run_id,
        "task": "classification",
        "dataset": dataset,
        "rows": 150,
        "metrics": {"candidate": candidate, "champion": dict(champion) if champion else None},
        "verdicts": verdicts,
        "beats_champion": True if detailed and champion else None,
        "passed": True,
        "notes": [],
    }


def _package(name: str, version: int, ok: bool, detailed: bool) -> dict[str, Any]:
    tag = name.lower()
    return {
        "bento_tag": f"{tag}:v{version}abc",
        "model_tag": f"{tag}:v{version}def",
        "smoke": {
            "passed": ok,
            "rows": 3,
            "mismatches": 0 if ok else 3,
            "error": None,
            "seconds": 0.41 if detailed else 0.5,
        },
        "parity": {"passed": True, "missing": [], "mismatched": []},
        "passed": ok,
    }


def record(client: Any, run_id: str, evidence: Mapping[str, Any]) -> str:
    """Record ``evidence`` for its model version with an ``MlflowClient``, as the library
    does, without the library's checks; return the digest."""
    name, version = evidence["model"]["name"], evidence["model"]["version"]
    body = canonical(evidence)
    digest = hashlib.sha256(body).hexdigest()
    path = f"mlops/evidence/{digest}.json"
    client.log_text(run_id, body.decode(), path)
    client.set_model_version_tag(name, str(version), "mlops.evidence.digest", digest)
    client.set_model_version_tag(name, str(version), "mlops.evidence.path", path)
    return digest
