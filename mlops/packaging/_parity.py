"""The pure half of packaging: the report entities and the parity checks behind them.

:class:`PackageReport` (with :class:`SmokeResult` and :class:`Parity`) is what
:func:`mlops.packaging.package` returns. :func:`dependency_parity` compares requirement
lines; :func:`_compare` compares served predictions with the MLflow pyfunc's. Nothing
here imports BentoML or MLflow. Import the public names from :mod:`mlops.packaging`.

Example:
    >>> from mlops.packaging import dependency_parity
    >>> dependency_parity(["numpy==2.4.6"], ["numpy==2.4.6"]).passed
    True
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops._optional import require
from mlops._render import badge, html_section, html_table, text_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PackageReport", "Parity", "SmokeResult", "dependency_parity"]


# --- reports ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SmokeResult:
    """The served Bento's answers against the MLflow pyfunc's on the same sample.

    Example:
        >>> SmokeResult(passed=True, rows=3, mismatches=0, error=None, seconds=1.5).to_dict()
        {'passed': True, 'rows': 3, 'mismatches': 0, 'error': None, 'seconds': 1.5}
    """

    passed: bool
    rows: int
    mismatches: int
    error: str | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe form used in the evidence bundle."""
        return {
            "passed": self.passed,
            "rows": self.rows,
            "mismatches": self.mismatches,
            "error": self.error,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class Parity:
    """Which of the model's requirements the Bento lacks or pins incompatibly.

    Example:
        >>> Parity(missing=("skops==0.16",), mismatched=()).passed
        False
    """

    missing: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """True when nothing is missing or mismatched."""
        return not self.missing and not self.mismatched

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe form used in the evidence bundle."""
        return {
            "passed": self.passed,
            "missing": list(self.missing),
            "mismatched": list(self.mismatched),
        }


@dataclass(frozen=True)
class PackageReport:
    """The Bento built for one model version, its smoke test and its dependency parity.

    ``passed`` needs both a passing smoke test and full parity; a skipped smoke test
    (``package(..., smoke=False)``) does not pass.

    Example:
        >>> report = mlops.package("iris", 3, sample=frame)          # doctest: +SKIP
        >>> report.to_dict()["smoke"]["passed"]                       # doctest: +SKIP
        True
    """

    bento_tag: str
    model_tag: str
    smoke: SmokeResult
    parity: Parity = field(default_factory=Parity)
    #: SHA-256 tree digest of the built Bento's folder (``mlops.packaging.bento_digest``)
    bento_digest: str | None = None

    @property
    def passed(self) -> bool:
        """True when the smoke test passed and the dependencies match."""
        return self.smoke.passed and self.parity.passed

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe form used in the evidence bundle."""
        return {
            "bento_tag": self.bento_tag,
            "model_tag": self.model_tag,
            "smoke": self.smoke.to_dict(),
            "parity": self.parity.to_dict(),
            "passed": self.passed,
            **({"bento_digest": self.bento_digest} if self.bento_digest else {}),
        }

    def _rows(self) -> list[list[Any]]:
        smoke = f"{self.smoke.rows} rows, {self.smoke.mismatches} mismatches"
        smoke += f", {self.smoke.seconds:.1f}s"
        if self.smoke.error:
            smoke += f": {self.smoke.error}"
        problems = [f"missing {r}" for r in self.parity.missing]
        problems += [f"mismatched {r}" for r in self.parity.mismatched]
        parity = "; ".join(problems)
        return [
            ["smoke test", self.smoke.passed, smoke],
            ["dependency parity", self.parity.passed, parity or "all model requirements present"],
        ]

    def __str__(self) -> str:
        head = f"Bento {self.bento_tag} (model {self.model_tag}): {badge(self.passed)}"
        rows = [[check, badge(ok), detail] for check, ok, detail in self._rows()]
        return f"{head}\n{text_table(['check', 'result', 'detail'], rows)}"

    def _repr_html_(self) -> str:
        rows = [[check, badge(ok, html_out=True), detail] for check, ok, detail in self._rows()]
        table = html_table(["check", "result", "detail"], rows, raw_columns=[1])
        title = f"Bento {self.bento_tag} (model {self.model_tag})"
        return html_section(title, table, passed=self.passed)


# --- dependency parity --------------------------------------------------------------------
def _requirement_name(line: str) -> str:
    from packaging.utils import canonicalize_name

    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return canonicalize_name(match.group(1)) if match else line.strip()


def dependency_parity(model: Sequence[str], bento: Sequence[str]) -> Parity:
    """Compare the model's requirements with the Bento's.

    A model requirement is *missing* when the Bento does not name the package, and
    *mismatched* when the Bento pins a version the model's specifier rejects (or leaves
    unpinned what the model pins). Option lines (``-r``, ``--index-url``) and requirements
    whose environment markers do not apply here are ignored.

    Example:
        >>> dependency_parity(["numpy==2.4.6", "skops"], ["numpy==2.4.6"]).missing
        ('skops',)
        >>> dependency_parity(["numpy>=2"], ["numpy==1.26.4"]).mismatched
        ('numpy>=2 (Bento has numpy==1.26.4)',)
    """
    from packaging.requirements import InvalidRequirement, Requirement

    def parse(lines: Sequence[str]) -> dict[str, tuple[str, Any]]:
        parsed: dict[str, tuple[str, Any]] = {}
        for line in lines:
            if line.lstrip().startswith("-"):
                continue
            try:
                req = Requirement(line)
            except InvalidRequirement:
                parsed[_requirement_name(line)] = (line, None)
                continue
            if req.marker is None or req.marker.evaluate():
                parsed[_requirement_name(req.name)] = (line, req)
        return parsed

    have = parse(bento)
    missing, mismatched = [], []
    for name, (line, req) in parse(model).items():
        if name not in have:
            missing.append(line)
        elif not _compatible(req, have[name][1]):
            mismatched.append(f"{line} (Bento has {have[name][0]})")
    return Parity(missing=tuple(missing), mismatched=tuple(mismatched))


def _compatible(model_req: Any, bento_req: Any) -> bool:
    if model_req is None or not model_req.specifier:
        return True
    if bento_req is None:
        return False
    pins = [s.version for s in bento_req.specifier if s.operator in ("==", "===")]
    if pins:
        return all(model_req.specifier.contains(v, prereleases=True) for v in pins)
    return str(bento_req.specifier) == str(model_req.specifier)


def _requirement_lines(text: str) -> list[str]:
    lines = (line.split(" #")[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# --- prediction parity --------------------------------------------------------------------
def _jsonable(predictions: Any) -> list[Any]:
    """Predictions as the generated service returns them (a JSON list)."""
    pd = require("pandas")
    np = require("numpy")
    if isinstance(predictions, pd.DataFrame):
        return json.loads(predictions.to_json(orient="records"))
    if isinstance(predictions, pd.Series):
        return json.loads(predictions.to_json(orient="values"))
    return np.asarray(predictions).tolist()


def _same(a: Any, b: Any) -> bool:
    number = (int, float)
    if isinstance(a, number) and isinstance(b, number) and not isinstance(a, bool):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _records(sample: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(sample.to_json(orient="records", date_format="iso"))


def _compare(served: Any, expected: list[Any]) -> tuple[int, str | None]:
    if not isinstance(served, list) or len(served) != len(expected):
        size = len(served) if isinstance(served, list) else type(served).__name__
        return len(expected), f"served {size} predictions for {len(expected)} rows"
    bad = [i for i, (s, e) in enumerate(zip(served, expected, strict=True)) if not _same(s, e)]
    if not bad:
        return 0, None
    i = bad[0]
    return len(bad), (
        f"{len(bad)} of {len(expected)} served predictions differ from the MLflow pyfunc's, "
        f"first at row {i}: served {served[i]!r}, pyfunc {expected[i]!r}"
    )
