"""Per-model policy scopes: defaults, then overrides by name or glob, most specific wins.

A policy's top-level ``targets`` are the defaults for every model. Under ``models``, a
name or a glob (``fnmatch``: ``*``, ``?``, ``[...]``) carries its own ``targets`` with only
the keys it changes. For one model and target the layers are applied from least to most
specific (defaults, then matching globs by how many literal characters they hold, then
the exact name); each field (``checks.metrics``, ``approvals.count``, ``protected``...) is
taken whole from the last layer that sets it.

Example:
    >>> order = _matching(["*", "iris-*", "iris-classifier", "wine-*"], "iris-classifier")
    >>> order
    ['*', 'iris-*', 'iris-classifier']
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

__all__ = ["SECTIONS", "describe", "merge_layers"]

_GLOB = set("*?[")
#: fields of a target merged field by field; the others are taken whole
SECTIONS = ("checks", "approvals", "rollback")


def _is_glob(pattern: str) -> bool:
    return bool(_GLOB & set(pattern))


def _specificity(pattern: str) -> tuple[int, int]:
    literal = sum(1 for c in pattern if c not in _GLOB)
    return (0 if _is_glob(pattern) else 1, literal)


def _matching(patterns: Iterable[str], model: str) -> list[str]:
    """Patterns matching ``model``, least specific first (file order breaks ties)."""
    found = [(i, p) for i, p in enumerate(patterns) if fnmatchcase(model, p)]
    found.sort(key=lambda item: (_specificity(item[1]), item[0]))
    return [p for _, p in found]


def merge_layers(layers: list[tuple[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge ``(source, TargetPolicy)`` layers into field values and each field's source.

    Only the fields a layer set explicitly count; keys are ``protected``,
    ``checks.metrics``, ``approvals.count``, ...

    Example:
        >>> from mlops.policy import TargetPolicy
        >>> base = TargetPolicy.model_validate({"approvals": {"count": 2}})
        >>> top = TargetPolicy.model_validate({"approvals": {"ttl": "1h"}})
        >>> values, sources = merge_layers([("targets.p", base), ("models.m.targets.p", top)])
        >>> values["approvals"]["count"], sources["approvals.count"], sources["approvals.ttl"]
        (2, 'targets.p.approvals.count', 'models.m.targets.p.approvals.ttl')
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for field in layer.model_fields_set:
            if field in SECTIONS:
                section = getattr(layer, field)
                bucket = values.setdefault(field, {})
                for sub in section.model_fields_set:
                    bucket[sub] = getattr(section, sub)
                    sources[f"{field}.{sub}"] = f"{source}.{field}.{sub}"
            else:
                values[field] = getattr(layer, field)
                sources[field] = f"{source}.{field}"
    return values, sources


def describe(policy: Any, model: str | None, target: str) -> list[dict[str, Any]]:
    """Every rule ``model`` gets for ``target``: key, value and where it was written.

    ``source`` is the policy-file key path that set the value, or ``"default"`` when
    nothing in the file did. :class:`~mlops.errors.PolicyError` if ``target`` is unknown.

    Example:
        >>> from mlops.policy import parse_policy
        >>> p = parse_policy({"targets": {"prod": {"approvals": {"count": 2}}},
        ...     "models": {"reg-*": {"targets": {"prod": {"approvals": {"count": 1}}}}}})
        >>> row = next(r for r in describe(p, "reg-1", "prod") if r["key"] == "approvals.count")
        >>> row["value"], row["source"]
        (1, 'models.reg-*.targets.prod.approvals.count')
    """
    resolved = policy.target(target, model)
    sources = policy.explain(model, target)
    data = resolved.model_dump(mode="json")
    for key in ("ttl", "request_ttl"):
        value = getattr(resolved.approvals, key)
        data["approvals"][key] = None if value is None else f"{value.total_seconds() / 3600:g}h"
    if resolved.requires is not None:
        data["requires"] = {
            "held": resolved.requires.held,
            "for": f"{resolved.requires.for_.total_seconds() / 3600:g}h",
        }
    rows = []
    for field, value in data.items():
        if field in SECTIONS:
            for sub, inner in value.items():
                key = f"{field}.{sub}"
                rows.append({"key": key, "value": inner, "source": sources.get(key, "default")})
        else:
            rows.append({"key": field, "value": value, "source": sources.get(field, "default")})
    return rows
