"""The champion a request's verdict was judged against, and whether it still holds the alias.

A verdict that compares the candidate with the alias holder (``must_beat_champion``, or a
metric rule with ``min_absolute_change``/``min_relative_change``) is only true for that
holder. So a request is bound to the champion its evaluation names (model, version and
run id, or none), checked at create against what the server can see itself: the alias
journal and MLflow's current holder. Approvals and the alias move re-check the binding
against the journal; a request whose champion moved ends ``stale``.

Evidence without champion information (no ``champion_alias``/``champion_version``, or a
champion version without ``champion_run_id``, as bundles written before the run id was
recorded) is refused for such targets: evaluate again. "No champion" needs no run id. A
bundle naming a champion but no champion metrics is refused too: the policy would read it
as "no champion holds the alias yet".

Example:
    >>> Champion(None, None).describe("churn", "production")
    'no holder of churn@production'
    >>> Champion(3, "a1b2").describe("churn", "production")
    'churn@production v3 (run a1b2)'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from mlops.errors import ChampionChanged, EvidenceError
from registry_server.services.journal import holder

if TYPE_CHECKING:
    from mlops.policy import TargetPolicy
    from registry_server.db.models import PromotionRequest
    from registry_server.services.context import ServerContext

__all__ = ["Champion", "bind", "check_create", "judges_champion", "moved"]


@dataclass(frozen=True)
class Champion:
    """A holder of an alias by version and run id; ``version`` ``None``: nobody holds it."""

    version: int | None
    run_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """``{"version", "run_id"}``, as stored on the request."""
        return {"version": self.version, "run_id": self.run_id}

    def same(self, other: Champion) -> bool:
        """Same version, and the same run wherever both runs are known."""
        if self.version != other.version:
            return False
        return not (self.run_id and other.run_id and self.run_id != other.run_id)

    def describe(self, model: str, alias: str) -> str:
        """Human words for the message of an error or an audit event."""
        if self.version is None:
            return f"no holder of {model}@{alias}"
        run = f" (run {self.run_id})" if self.run_id else ""
        return f"{model}@{alias} v{self.version}{run}"


def judges_champion(tp: TargetPolicy) -> bool:
    """True if the target's verdict depends on who holds the alias."""
    if tp.checks.must_beat_champion:
        return True
    return any(
        r.min_absolute_change is not None or r.min_relative_change is not None
        for r in tp.checks.metrics.values()
    )


def claimed(bundle: dict[str, Any], model: str, target: str) -> Champion:
    """The champion the evidence's evaluation was judged against (refuses old bundles)."""
    evaluation = bundle.get("evaluation") or {}
    hint = (
        f"Evaluate {model!r} again against the current {target!r} holder "
        f"(`mlops.evaluate(..., champion={target!r})` or `mlops promote`), record the "
        "evidence and open a new request."
    )
    if "champion_alias" not in evaluation or "champion_version" not in evaluation:
        raise EvidenceError(
            f"The evidence of {model!r} v{bundle['model']['version']} does not say which "
            f"champion its evaluation was judged against.",
            hint=hint,
        )
    if evaluation["champion_alias"] != target:
        raise EvidenceError(
            f"The evidence was judged against the holder of "
            f"{evaluation['champion_alias']!r}, not of the target {target!r}.",
            hint=hint,
        )
    version, run_id = evaluation["champion_version"], evaluation.get("champion_run_id")
    if version is not None and not run_id:
        raise EvidenceError(
            f"The evidence names champion v{version} of {model!r} but not its run "
            "(evidence recorded before champions were bound by run id).",
            hint=hint,
        )
    if version is not None and not (evaluation.get("metrics") or {}).get("champion"):
        raise EvidenceError(
            f"The evidence names champion v{version} of {model!r} but holds no champion "
            "metrics: the comparison with it was never made.",
            hint=hint,
        )
    return Champion(version, run_id)


def held_now(ctx: ServerContext, model: str, alias: str) -> Champion:
    """The holder the server sees: the journal's, with MLflow's run id for it.

    With no journal row the alias was never moved by the server; MLflow's holder (maybe
    none) is then what a promotion would replace.
    """
    with ctx.db.read_sessions() as s:
        row = holder(s, model, alias)
        journal = None if row is None else row.version
    seen = ctx.gateway.describe_alias(model, alias)
    if journal is not None and seen.get("version") != journal:
        raise ChampionChanged(
            f"{model}@{alias} is v{journal} in the server's journal but "
            f"v{seen.get('version')} in MLflow: it was moved outside the server and is "
            "being put back.",
            hint="Retry in a minute, once the server has restored the alias.",
        )
    return Champion(seen.get("version"), seen.get("run_id"))


def bind(
    ctx: ServerContext, bundle: dict[str, Any], model: str, target: str, tp: TargetPolicy
) -> Champion | None:
    """The champion to bind a new request to; ``None`` if the verdict does not judge one."""
    if not judges_champion(tp):
        return None
    judged, now = claimed(bundle, model, target), held_now(ctx, model, target)
    if not judged.same(now):
        raise _changed(model, target, judged, now)
    return now


def _changed(model: str, target: str, judged: Champion, now: Champion) -> ChampionChanged:
    return ChampionChanged(
        f"The evidence was judged against {judged.describe(model, target)}, but the "
        f"holder is now {now.describe(model, target)}.",
        hint=f"Evaluate {model!r} again against the current {target!r} holder, record the "
        "evidence and open a new request (POST /v1/promotions).",
        judged=judged.to_dict(),
        current=now.to_dict(),
    )


def moved(s: Session, req: PromotionRequest, tp: TargetPolicy | None) -> str | None:
    """Why the request's champion no longer holds its target (``None``: it still does)."""
    bound = req.champion
    if bound is None:
        if tp is not None and judges_champion(tp):
            return "the request is bound to no champion (opened before champions were bound)"
        return None
    row = holder(s, req.model, req.target)
    if row is None:
        return None  # the server never moved the alias: nothing changed since create
    judged = Champion(bound.get("version"), bound.get("run_id"))
    now = Champion(row.version, getattr(row, "run_id", None))
    if judged.same(now):
        return None
    return (
        f"judged against {judged.describe(req.model, req.target)}, "
        f"now {now.describe(req.model, req.target)}"
    )


def check_create(s: Session, model: str, target: str, bound: Champion | None) -> None:
    """Under the target lock: the journal must still show the holder :func:`bind` saw."""
    if bound is None:
        return
    row = holder(s, model, target)
    if row is None:
        return
    now = Champion(row.version, getattr(row, "run_id", None))
    if not bound.same(now):
        raise _changed(model, target, bound, now)
