"""Re-derive an evidence bundle's validation and evaluation from its pinned inputs.

A bundle says which data each report ran on (DVC path + md5) and which model versions
were scored. :func:`rederive` fetches that data by md5 from the DVC remote, re-runs each
recorded suite with Great Expectations and re-scores the candidate (and the champion the
evaluation names) with the same metrics :func:`mlops.evaluation.evaluate` computes, then
lists every value that differs from the bundle. The registry server runs it before a
request takes approvals, so a bundle written by hand (every metric 0.999) is caught.

What is compared:

- ``validation``: per report, ``success``, ``rows``, the ``statistics`` and each
  expectation's ``success`` and ``observed`` values. The suite re-run is the one the
  report records (each expectation's type and kwargs, covered by the bundle's digest);
- ``evaluation``: ``rows`` and every candidate and champion metric.

Numbers match when they differ by at most ``tolerance`` (absolute); everything else must
be equal. What cannot be re-derived (a report on an in-memory DataFrame with no DVC
identity, data missing from the remote, no label column) raises
:class:`~mlops.errors.EvidenceUnverifiable` naming it.

Example:
    >>> found = rederive(bundle, ["validation", "evaluation"], remote="/srv/dvc")  # doctest: +SKIP
    >>> found.ok, [d.to_dict() for d in found.differences]                          # doctest: +SKIP
    (False, [{'what': 'evaluation.metrics.candidate.accuracy', 'bundle': 0.999, ...}])
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.errors import EvidenceUnverifiable

__all__ = ["STEPS", "Difference", "Rederived", "rederive"]

#: the parts of a bundle that can be re-derived, in the order they run
STEPS = ("validation", "evaluation")
ModelLoader = Callable[[str, int], Any]


@dataclass(frozen=True)
class Difference:
    """One value the bundle states and what re-deriving it gave.

    Example:
        >>> Difference("evaluation.metrics.candidate.accuracy", 0.999, 0.96).to_dict()["what"]
        'evaluation.metrics.candidate.accuracy'
    """

    what: str
    bundle: Any
    recomputed: Any

    def to_dict(self) -> dict[str, Any]:
        """``{"what", "bundle", "recomputed"}``."""
        return {"what": self.what, "bundle": self.bundle, "recomputed": self.recomputed}

    def __str__(self) -> str:
        return f"{self.what}: bundle {self.bundle!r}, recomputed {self.recomputed!r}"


@dataclass(frozen=True)
class Rederived:
    """What :func:`rederive` compared: the steps run, the values checked, the differences.

    Example:
        >>> Rederived(("evaluation",), checked=5).ok
        True
    """

    steps: tuple[str, ...]
    checked: int = 0
    differences: tuple[Difference, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when every value re-derived matched the bundle."""
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        """``{"steps", "checked", "differences"}`` (JSON-safe)."""
        return {
            "steps": list(self.steps),
            "checked": self.checked,
            "differences": [d.to_dict() for d in self.differences],
        }


def rederive(
    bundle: Mapping[str, Any],
    steps: Iterable[str],
    *,
    remote: str | None = None,
    remote_config: Mapping[str, Any] | None = None,
    load_model: ModelLoader | None = None,
    tolerance: float = 1e-6,
) -> Rederived:
    """Re-run ``steps`` (of :data:`STEPS`) of ``bundle`` from its pinned data and models.

    ``remote`` is the DVC remote to fetch from (default: the one each dataset records);
    ``load_model(name, version)`` returns a loaded pyfunc model (default: MLflow's
    ``models:/name/version`` on the configured registry).

    Example:
        >>> rederive(ev.to_dict(), ["evaluation"]).ok  # doctest: +SKIP
        True
    """
    wanted = tuple(s for s in STEPS if s in set(steps))
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise EvidenceUnverifiable(f"Cannot re-derive {unknown}: known steps are {list(STEPS)}.")
    compare = _Compare(tolerance)
    with tempfile.TemporaryDirectory(prefix="mlops-rederive-") as tmp:
        data = _DataCache(Path(tmp), remote, dict(remote_config or {}))
        if "validation" in wanted:
            _validation(bundle, data, compare)
        if "evaluation" in wanted:
            _evaluation(bundle, data, load_model or _registry_model, compare)
    return Rederived(wanted, compare.checked, tuple(compare.differences))


# --- data -------------------------------------------------------------------------------
class _DataCache:
    """DataFrames fetched by md5 from the DVC remote, each read once per call."""

    def __init__(self, root: Path, remote: str | None, config: dict[str, Any]) -> None:
        self.root, self.remote, self.config = root, remote, config
        self.frames: dict[str, Any] = {}

    def frame(self, dataset: Mapping[str, Any] | None, what: str) -> Any:
        from mlops.data import DataNotInRemote, fetch, read_fetched

        md5 = (dataset or {}).get("md5")
        if not md5:
            raise EvidenceUnverifiable(
                f"The {what} ran on data with no DVC identity (no md5), so it cannot be "
                "re-run from pinned inputs.",
                hint="Pass a DVC DatasetVersion (mlops.data.version(...)), not a DataFrame.",
            )
        if md5 not in self.frames:
            remote = self.remote or dataset.get("remote")
            if not remote:
                raise EvidenceUnverifiable(
                    f"No DVC remote to fetch the {what} data {dataset.get('path')!r} "
                    f"(md5 {md5}) from: the dataset records none and none is configured.",
                    hint="Set MLOPS_REGISTRY_DVC_REMOTE_URL on the server.",
                )
            name = str(dataset.get("path") or "data")
            try:
                files = fetch(md5, remote=remote, to=self.root / md5, name=name, **self._cfg())
            except DataNotInRemote as exc:
                raise EvidenceUnverifiable(
                    f"The {what} data {name!r} (md5 {md5}) is not in the DVC remote "
                    f"{remote!r}: {exc.message}",
                    hint="Push it with `dvc push`, then open a new request.",
                    missing_md5=md5,  # a pipeline may push right after it requests
                ) from exc
            self.frames[md5] = read_fetched(files)
        return self.frames[md5]

    def _cfg(self) -> dict[str, Any]:
        return {"remote_config": self.config} if self.config else {}


# --- validation ---------------------------------------------------------------------------
def _validation(bundle: Mapping[str, Any], data: _DataCache, compare: _Compare) -> None:
    from mlops.validation import Suite, SuiteError, validate

    reports = bundle.get("validation") or []
    if not reports:
        raise EvidenceUnverifiable("The evidence holds no validation report to re-run.")
    for report in reports:
        where = f"validation[{report.get('suite')}]"
        specs = [{"type": r.get("type"), "kwargs": r.get("kwargs")} for r in report["results"]]
        try:
            suite = Suite(str(report.get("suite")), specs)
        except SuiteError as exc:
            raise EvidenceUnverifiable(f"{where} records no runnable suite: {exc.message}") from exc
        frame = data.frame(report.get("dataset"), f"{where} report")
        again = validate(frame, suite, log=False).to_dict()
        for key in ("success", "rows"):
            compare.value(f"{where}.{key}", report.get(key), again[key])
        compare.mapping(f"{where}.statistics", report.get("statistics"), again["statistics"])
        for i, (old, new) in enumerate(zip(report["results"], again["results"], strict=True)):
            compare.value(f"{where}.results[{i}].success", old.get("success"), new["success"])
            compare.mapping(f"{where}.results[{i}].observed", old.get("observed"), new["observed"])


# --- evaluation ---------------------------------------------------------------------------
def _evaluation(
    bundle: Mapping[str, Any], data: _DataCache, load_model: ModelLoader, compare: _Compare
) -> None:
    from mlops.evaluation import score

    ev = bundle.get("evaluation")
    if not ev:
        raise EvidenceUnverifiable("The evidence holds no evaluation to re-run.")
    frame = data.frame(ev.get("dataset"), "evaluation")
    name = str(ev.get("model"))
    candidate = _load(load_model, name, ev.get("candidate_version"))
    label = ev.get("label") or _label_from_signature(candidate, frame)
    task = ev.get("task")
    metrics = ev.get("metrics") or {}
    compare.value("evaluation.rows", ev.get("rows"), len(frame))
    mine = score(candidate, frame, label=label, task=task)
    compare.mapping("evaluation.metrics.candidate", metrics.get("candidate"), mine)
    champ_version = ev.get("champion_version")
    if champ_version is None:
        compare.value("evaluation.metrics.champion", metrics.get("champion"), None)
        return
    if champ_version == ev.get("candidate_version"):
        theirs = mine
    else:
        theirs = score(_load(load_model, name, champ_version), frame, label=label, task=task)
    compare.mapping("evaluation.metrics.champion", metrics.get("champion"), theirs)


def _load(load_model: ModelLoader, name: str, version: Any) -> Any:
    if isinstance(version, bool) or not isinstance(version, int):
        raise EvidenceUnverifiable(f"The evaluation names model version {version!r}, not a number.")
    return load_model(name, version)


def _label_from_signature(model: Any, frame: Any) -> str:
    """The one column of ``frame`` the model does not take as input (older reports)."""
    schema = getattr(getattr(model, "metadata", None), "get_input_schema", lambda: None)()
    inputs = set(schema.input_names()) if schema is not None and schema.has_input_names() else set()
    rest = [str(c) for c in frame.columns if str(c) not in inputs] if inputs else []
    if len(rest) != 1:
        raise EvidenceUnverifiable(
            "The evaluation does not record its label column and the model's signature "
            f"does not single it out (columns not taken as input: {rest}).",
            hint="Evaluate with this mlops (it records the label), record the evidence again.",
        )
    return rest[0]


def _registry_model(name: str, version: int) -> Any:
    from mlops._optional import require
    from mlops.tracking import _apply_uris

    mlflow = require("mlflow")
    _apply_uris()
    try:
        return mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except mlflow.exceptions.MlflowException as exc:
        raise EvidenceUnverifiable(f"Could not load {name!r} version {version}: {exc}") from exc


# --- comparing ------------------------------------------------------------------------------
class _Compare:
    """Collects differences; numbers match within ``tolerance``."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.checked = 0
        self.differences: list[Difference] = []

    def value(self, what: str, bundle: Any, recomputed: Any) -> None:
        self.checked += 1
        if not self._same(bundle, recomputed):
            self.differences.append(Difference(what, bundle, recomputed))

    def mapping(self, what: str, bundle: Any, recomputed: Mapping[str, Any] | None) -> None:
        if not isinstance(bundle, Mapping) or not isinstance(recomputed, Mapping):
            self.value(what, bundle, recomputed)
            return
        for key in sorted(set(bundle) | set(recomputed)):
            self.value(f"{what}.{key}", bundle.get(key), recomputed.get(key))

    def _same(self, a: Any, b: Any) -> bool:
        if _number(a) and _number(b):
            return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=self.tolerance)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            return set(a) == set(b) and all(self._same(a[k], b[k]) for k in a)
        if _sequence(a) and _sequence(b):
            return len(a) == len(b) and all(self._same(x, y) for x, y in zip(a, b, strict=True))
        return a == b


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)
