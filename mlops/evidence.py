"""The evidence bundle: everything a reviewer needs about one model version, hashed.

A bundle (schema 1) holds the model version, its lineage (git commit, datasets), the
validation reports, the evaluation report and the package report. Its identity is the
SHA-256 of its canonical JSON; an approval is bound to that digest, so changing any
piece of evidence yields a new digest and earlier approvals no longer count.

:func:`record` stores the canonical JSON as the MLflow artifact
``mlops/evidence/<digest>.json`` in the version's run and tags the model version with
``mlops.evidence.digest`` and ``mlops.evidence.path``. :func:`load` reads it back and
refuses it if its content no longer matches the digest.

Example:
    >>> from mlops import evidence
    >>> ev = evidence.collect("churn", 3, validation=[vr], evaluation=er)   # doctest: +SKIP
    >>> digest = evidence.record(ev)                                        # doctest: +SKIP
    >>> evidence.load("churn", 3).digest == digest                          # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mlops import _render
from mlops._optional import require
from mlops.errors import (
    EvidenceError,
    EvidenceMismatch,
    TrackingError,
)
from mlops.registry import _client
from mlops.registry import _mlflow_version as _model_version

__all__ = [
    "DIGEST_TAG",
    "PATH_TAG",
    "SCHEMA",
    "Evidence",
    "canonical_json",
    "collect",
    "digest_of",
    "from_json",
    "load",
    "pinned_datasets",
    "record",
]

SCHEMA = 1
DIGEST_TAG = "mlops.evidence.digest"
PATH_TAG = "mlops.evidence.path"
_KEYS = ("schema", "model", "lineage", "validation", "evaluation", "package")
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


def canonical_json(obj: Any) -> bytes:
    """The one byte form of ``obj`` that is hashed: sorted keys, no spaces, UTF-8.

    Example:
        >>> canonical_json({"b": 1, "a": [1.5, "é"]})
        b'{"a":[1.5,"\\xc3\\xa9"],"b":1}'
    """
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise EvidenceError(
            f"Evidence must be plain JSON (str, int, float, bool, None, lists, dicts "
            f"with str keys, no NaN/inf): {exc}.",
            hint="Pass reports through their to_dict(); replace NaN metrics with None.",
        ) from exc
    return text.encode("utf-8")


def digest_of(obj: Any) -> str:
    """SHA-256 hex digest of :func:`canonical_json` of ``obj``.

    Example:
        >>> digest_of({"a": 1, "b": [2]}) == digest_of({"b": [2], "a": 1})
        True
        >>> len(digest_of({}))
        64
    """
    return hashlib.sha256(canonical_json(obj)).hexdigest()


@dataclass(frozen=True, eq=False)
class Evidence:
    """One model version's evidence bundle (schema 1); equal bundles have equal digests.

    Build it with :func:`collect` (lineage read from the registry) or
    :meth:`Evidence.from_dict`. The sections are stored as plain JSON values (copied on
    construction), so the digest cannot drift after the bundle is built.

    Example:
        >>> ev = Evidence.from_dict({"schema": 1,
        ...     "model": {"name": "churn", "version": 3, "run_id": None},
        ...     "lineage": {"git_commit": None, "datasets": []},
        ...     "validation": [], "evaluation": None, "package": None})
        >>> ev.digest == digest_of(ev.to_dict())
        True
    """

    model: dict[str, Any]
    lineage: dict[str, Any]
    validation: tuple[dict[str, Any], ...] = ()
    evaluation: dict[str, Any] | None = None
    package: dict[str, Any] | None = None
    schema: int = field(default=SCHEMA)

    def __post_init__(self) -> None:
        copy = _plain(_check_bundle(self._raw()))
        for key in ("model", "lineage", "evaluation", "package"):
            object.__setattr__(self, key, copy[key])
        object.__setattr__(self, "validation", tuple(copy["validation"]))

    def _raw(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "model": self.model,
            "lineage": self.lineage,
            "validation": list(self.validation),
            "evaluation": self.evaluation,
            "package": self.package,
        }

    @classmethod
    def from_dict(cls, bundle: Mapping[str, Any]) -> Evidence:
        """Build from the bundle dict; :class:`EvidenceError` names a missing or wrong key."""
        if not isinstance(bundle, Mapping):
            raise EvidenceError(
                f"An evidence bundle is a JSON object; got {type(bundle).__name__}."
            )
        _check_bundle(bundle)
        return cls(
            model=bundle["model"],
            lineage=bundle["lineage"],
            validation=tuple(bundle["validation"]),
            evaluation=bundle["evaluation"],
            package=bundle["package"],
            schema=bundle["schema"],
        )

    @property
    def name(self) -> str:
        """The registered model name."""
        return self.model["name"]

    @property
    def version(self) -> int:
        """The model version number."""
        return self.model["version"]

    @property
    def run_id(self) -> str | None:
        """The MLflow run that produced the version (where the bundle is recorded)."""
        return self.model.get("run_id")

    @cached_property
    def digest(self) -> str:
        """SHA-256 hex of :meth:`to_json`."""
        return hashlib.sha256(self.to_json()).hexdigest()

    @property
    def path(self) -> str:
        """The artifact path the bundle is recorded under in the version's run."""
        return f"mlops/evidence/{self.digest}.json"

    def to_dict(self) -> dict[str, Any]:
        """The bundle dict (a fresh copy, safe to change)."""
        return _plain(self._raw())

    def to_json(self) -> bytes:
        """Canonical JSON bytes: what is stored and hashed."""
        return canonical_json(self._raw())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Evidence) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def _summary(self) -> list[tuple[str, bool | None, str]]:
        return [
            ("lineage", None, _lineage_text(self.lineage)),
            ("validation", _all_passed(self.validation, "success"), _validation_text(self)),
            ("evaluation", _flag(self.evaluation, "passed"), _evaluation_text(self.evaluation)),
            ("package", _flag(self.package, "passed"), _package_text(self.package)),
        ]

    def _title(self) -> str:
        return f"Evidence for {self.name} v{self.version} (sha256 {self.digest[:12]})"

    def __str__(self) -> str:
        lines = [self._title()]
        for section, passed, text in self._summary():
            mark = _render.badge(passed) if passed is not None else "    "
            lines.append(f"  {mark:4} {section:10} {text}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [
            [_render.badge(passed, html_out=True), section, html.escape(text)]
            for section, passed, text in self._summary()
        ]
        table = _render.html_table(["", "section", "summary"], rows, raw_columns=[0, 2])
        body = f"<p><code>{self.digest}</code></p>{table}"
        return _render.html_section(self._title(), body)


# --- building ---------------------------------------------------------------------------
def collect(
    name: str,
    version: int | str,
    *,
    validation: Iterable[Any] = (),
    evaluation: Any = None,
    package: Any = None,
) -> Evidence:
    """Bundle the reports for ``name`` version ``version`` with its lineage from the registry.

    ``validation`` holds ``ValidationReport`` objects (or their dicts), ``evaluation`` an
    ``EvaluationReport`` and ``package`` a ``PackageReport`` (or their dicts). Datasets and
    validation reports are sorted, so the digest does not depend on the order given.

    Example:
        >>> ev = collect("churn", 3, validation=[report], evaluation=ev_report)  # doctest: +SKIP
        >>> ev.digest                                                           # doctest: +SKIP
        '5d41...'
    """
    from mlops import registry

    number = _as_version(version)
    lineage = registry.lineage(name, number)
    evaluation_dict = _section(evaluation, "evaluation")
    if evaluation_dict is not None:
        _check_same_model(evaluation_dict, name, number)
    datasets = sorted((_section(d, "dataset") for d in lineage.datasets), key=canonical_json)
    reports = sorted((_section(v, "validation") for v in validation), key=canonical_json)
    return Evidence(
        model={"name": name, "version": number, "run_id": lineage.run_id},
        lineage={"git_commit": lineage.git_commit, "datasets": datasets},
        validation=tuple(reports),
        evaluation=evaluation_dict,
        package=_section(package, "package"),
    )


def from_json(data: bytes | str, *, expected_digest: str | None = None) -> Evidence:
    """Parse a stored bundle; with ``expected_digest``, refuse content that does not match.

    Example:
        >>> ev2 = from_json(ev.to_json(), expected_digest=ev.digest)  # doctest: +SKIP
    """
    try:
        bundle = json.loads(data)
    except (TypeError, ValueError) as exc:
        if expected_digest is not None:
            raise EvidenceMismatch(
                f"The evidence is not valid JSON ({exc}), so it cannot match digest "
                f"{expected_digest}: it was changed after it was recorded.",
            ) from exc
        raise EvidenceError(f"The evidence is not valid JSON: {exc}.") from exc
    evidence = Evidence.from_dict(bundle)
    if expected_digest is not None and evidence.digest != expected_digest:
        raise EvidenceMismatch(
            f"The evidence content hashes to {evidence.digest}, not the expected "
            f"{expected_digest}: it was changed after it was recorded.",
        )
    return evidence


# --- storing in MLflow -------------------------------------------------------------------
def record(evidence: Evidence) -> str:
    """Store ``evidence`` in its version's MLflow run and tag the version; returns the digest.

    Example:
        >>> record(collect("churn", 3, evaluation=report))  # doctest: +SKIP
        '5d41...'
    """
    client = _client()
    mv = _model_version(client, evidence.name, evidence.version)
    run_id = evidence.run_id or mv.run_id
    if not run_id:
        raise EvidenceError(
            f"Model {evidence.name!r} version {evidence.version} has no MLflow run to store "
            "its evidence in.",
            hint="Register versions from a run (`mlops.register(run, name)`).",
        )
    if mv.run_id and run_id != mv.run_id:
        raise EvidenceError(
            f"The evidence names run {run_id}, but {evidence.name!r} version "
            f"{evidence.version} was produced by run {mv.run_id}.",
        )
    mlflow = require("mlflow")
    try:
        client.log_text(run_id, evidence.to_json().decode("utf-8"), evidence.path)
        client.set_model_version_tag(
            evidence.name, str(evidence.version), DIGEST_TAG, evidence.digest
        )
        client.set_model_version_tag(evidence.name, str(evidence.version), PATH_TAG, evidence.path)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"Could not record evidence in run {run_id}: {exc}") from exc
    return evidence.digest


def load(name: str, version: int | str, *, digest: str | None = None) -> Evidence:
    """Download the recorded bundle of a version and check it still matches its digest.

    Without ``digest`` the one tagged on the version (the latest recorded) is loaded.
    Raises :class:`EvidenceMismatch` if the stored content hashes to something else.

    Example:
        >>> load("churn", 3).evaluation["passed"]  # doctest: +SKIP
        True
    """
    number = _as_version(version)
    mv = _model_version(_client(), name, number)
    return _load_from(name, number, mv.run_id, mv.tags or {}, digest, _download)


def _load_from(
    name: str,
    number: int,
    run_id: str | None,
    tags: Mapping[str, str],
    digest: str | None,
    download: Callable[[str, str], bytes],
) -> Evidence:
    """:func:`load` for a version already read (its run and tags), reading the artifact
    with ``download(run_id, artifact_path)``."""
    expected = digest or tags.get(DIGEST_TAG)
    if not expected:
        raise EvidenceError(
            f"Model {name!r} version {number} has no recorded evidence (no {DIGEST_TAG} tag).",
            hint="Record it with `mlops.evidence.record(mlops.evidence.collect(...))`.",
        )
    if not _DIGEST_RE.match(expected):
        raise EvidenceError(
            f"Evidence digest must be 64 lowercase hex characters; got {expected!r}."
        )
    if not run_id:
        raise EvidenceError(f"Model {name!r} version {number} has no MLflow run with evidence.")
    evidence = from_json(
        download(run_id, f"mlops/evidence/{expected}.json"), expected_digest=expected
    )
    if evidence.name != name or evidence.version != number:
        raise EvidenceMismatch(
            f"The evidence {expected} stored with {name!r} version {number} describes "
            f"{evidence.name!r} version {evidence.version}.",
        )
    return evidence


# --- helpers ----------------------------------------------------------------------------


def pinned_datasets(bundle: Evidence | Mapping[str, Any], steps: Iterable[str]) -> list[dict]:
    """The datasets re-deriving ``steps`` of the bundle reads (what the server fetches).

    ``validation`` reads each validation report's dataset, ``evaluation`` the evaluation's;
    datasets without an identity are left out (the server refuses those on its own).

    Example:
        >>> pinned_datasets({"evaluation": {"dataset": {"path": "data/eval.csv", "md5": "ab"}}},
        ...                 ["evaluation"])
        [{'path': 'data/eval.csv', 'md5': 'ab'}]
    """
    doc = bundle.to_dict() if isinstance(bundle, Evidence) else bundle
    wanted = set(steps)
    found: list[Mapping[str, Any] | None] = []
    if "validation" in wanted:
        found += [report.get("dataset") for report in doc.get("validation") or ()]
    if "evaluation" in wanted:
        found.append((doc.get("evaluation") or {}).get("dataset"))
    return [dict(ds) for ds in found if isinstance(ds, Mapping) and ds.get("md5")]


def _download(run_id: str, artifact_path: str) -> bytes:
    mlflow = require("mlflow")
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path)
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise EvidenceError(
            f"Could not read evidence artifact {artifact_path!r} of run {run_id}: {exc}",
            hint="Pass a digest that was recorded, or record the evidence again.",
        ) from exc
    return Path(local).read_bytes()


def _as_version(version: int | str) -> int:
    try:
        number = int(version)
    except (TypeError, ValueError) as exc:
        raise EvidenceError(f"Model version must be a positive integer; got {version!r}.") from exc
    if number < 1:
        raise EvidenceError(f"Model version must be a positive integer; got {version!r}.")
    return number


def _section(value: Any, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise EvidenceError(
            f"The {what} evidence must be a report object or a dict; got {type(value).__name__}."
        )
    return _plain(value)


def _check_same_model(evaluation: Mapping[str, Any], name: str, version: int) -> None:
    got = (evaluation.get("model"), evaluation.get("candidate_version"))
    if got != (name, version):
        raise EvidenceError(
            f"The evaluation report is for {got[0]!r} version {got[1]}, not {name!r} "
            f"version {version}.",
            hint="Evaluate the version you collect evidence for.",
        )


def _plain(obj: Any) -> Any:
    """A deep copy made of plain JSON values (tuples become lists)."""
    return json.loads(canonical_json(obj))


def _check_bundle(bundle: Mapping[str, Any]) -> Mapping[str, Any]:
    missing = [k for k in _KEYS if k not in bundle]
    extra = sorted(set(bundle) - set(_KEYS))
    if missing or extra:
        raise EvidenceError(
            f"Evidence bundle keys must be {list(_KEYS)}; missing {missing}, unknown {extra}."
        )
    if bundle["schema"] != SCHEMA:
        raise EvidenceError(
            f"Evidence schema {bundle['schema']!r} is not supported; this mlops reads {SCHEMA}.",
            hint="Upgrade mlops, or rebuild the evidence with this version.",
        )
    model = bundle["model"]
    if not isinstance(model, Mapping) or not isinstance(model.get("name"), str):
        raise EvidenceError(f"Evidence 'model' needs a string 'name'; got {model!r}.")
    if isinstance(model.get("version"), bool) or not isinstance(model.get("version"), int):
        raise EvidenceError(f"Evidence 'model.version' must be an integer; got {model!r}.")
    lineage = bundle["lineage"]
    if not isinstance(lineage, Mapping) or not isinstance(lineage.get("datasets"), list | tuple):
        raise EvidenceError(f"Evidence 'lineage' needs a 'datasets' list; got {lineage!r}.")
    if not isinstance(bundle["validation"], list | tuple):
        raise EvidenceError(f"Evidence 'validation' must be a list; got {bundle['validation']!r}.")
    for key in ("evaluation", "package"):
        if bundle[key] is not None and not isinstance(bundle[key], Mapping):
            raise EvidenceError(f"Evidence {key!r} must be an object or null; got {bundle[key]!r}.")
    return bundle


def _flag(section: Mapping[str, Any] | None, key: str) -> bool | None:
    return None if section is None else bool(section.get(key))


def _all_passed(items: Iterable[Mapping[str, Any]], key: str) -> bool | None:
    items = list(items)
    return all(bool(i.get(key)) for i in items) if items else None


def _lineage_text(lineage: Mapping[str, Any]) -> str:
    commit = lineage.get("git_commit")
    data = ", ".join(
        f"{d.get('path')}@{str(d.get('rev'))[:8]} (md5 {str(d.get('md5'))[:8]})"
        for d in lineage.get("datasets", [])
    )
    return f"commit {commit[:8] if commit else '-'}; data: {data or 'none recorded'}"


def _validation_text(evidence: Evidence) -> str:
    if not evidence.validation:
        return "no validation reports"
    return ", ".join(
        f"{v.get('suite')} {_render.badge(_flag(v, 'success'))}" for v in evidence.validation
    )


def _evaluation_text(evaluation: Mapping[str, Any] | None) -> str:
    if evaluation is None:
        return "not evaluated"
    cand = (evaluation.get("metrics") or {}).get("candidate") or {}
    metrics = ", ".join(f"{k} {_render.fmt(v)}" for k, v in cand.items())
    champ = evaluation.get("champion_version")
    vs = (
        f"vs v{champ}, beats: {_render.fmt(evaluation.get('beats_champion'))}"
        if champ
        else "no champion"
    )
    return f"{metrics}; {vs}"


def _package_text(package: Mapping[str, Any] | None) -> str:
    if package is None:
        return "not packaged"
    smoke = package.get("smoke") or {}
    return f"{package.get('bento_tag')}; smoke {_render.badge(_flag(smoke, 'passed'))}"
