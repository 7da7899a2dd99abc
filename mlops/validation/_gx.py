"""The Great Expectations Core 1.x side of :mod:`mlops.validation`.

One private ephemeral GX Data Context per process, created on first use and reused. GX
contexts are not thread-safe, so every call that touches GX holds :data:`_LOCK`. The
pandas datasource, its dataframe asset and the whole-dataframe batch definition are made
once with the context, so re-running a validation never trips GX's "already exists"
checks. Usage analytics stay off unless the user set ``GX_ANALYTICS_ENABLED`` themselves.

Example:
    >>> from mlops.validation._gx import expectation_class
    >>> expectation_class("expect_column_values_to_not_be_null").__name__
    'ExpectColumnValuesToNotBeNull'
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import pickle
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops._optional import require
from mlops.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["GxRun", "SuiteError", "expectation_class", "frame_fingerprint", "run_suite"]

_LOCK = threading.RLock()
_STATE: _GxState | None = None
_DATASOURCE = "mlops"
_ASSET = "frame"
_BATCH = "whole"


class SuiteError(ConfigError):
    """An expectation suite that cannot be built: unknown type, bad kwargs, bad file."""

    code = "suite_error"
    default_hint = (
        "Fix the suite: each expectation is {'type': 'expect_...', 'kwargs': {...}} with a "
        "GX Core 1.x expectation type and its arguments."
    )


@dataclass(frozen=True)
class _GxState:
    context: Any
    batch_definition: Any


@dataclass(frozen=True)
class GxRun:
    """One GX validation: the suite result, its per-expectation results in suite order
    (GX groups them by column), and GX's fingerprint of the batch (None if not computed)."""

    result: Any
    results: tuple[Any, ...]
    fingerprint: str | None


def _gx() -> Any:
    """Import GX, with usage analytics off unless the user set ``GX_ANALYTICS_ENABLED``."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    return require("great_expectations")


def _analytics_wanted() -> bool:
    return os.environ.get("GX_ANALYTICS_ENABLED", "false").strip().lower() in {"1", "true", "yes"}


def _new_state() -> _GxState:
    _gx()
    from great_expectations.data_context import EphemeralDataContext, project_manager, set_context
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.exceptions import DataContextRequiredError

    config = DataContextConfig(
        analytics_enabled=_analytics_wanted(),
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
    )
    context = EphemeralDataContext(project_config=config)
    try:  # GX asks "the current context" whether it runs on GX Cloud; leave a user's one alone
        project_manager.get_current_project()
    except DataContextRequiredError:
        set_context(context)
    asset = context.data_sources.add_pandas(_DATASOURCE).add_dataframe_asset(_ASSET)
    batch_definition = asset.add_batch_definition_whole_dataframe(_BATCH)
    return _GxState(context=context, batch_definition=batch_definition)


def _state() -> _GxState:
    global _STATE
    with _LOCK:
        if _STATE is None:
            _STATE = _new_state()
        return _STATE


def _camel(type_name: str) -> str:
    return "".join(part.capitalize() for part in type_name.split("_"))


def _known_types() -> list[str]:
    gx = _gx()
    from great_expectations.expectations.expectation import Expectation

    names = []
    for attr in dir(gx.expectations):
        obj = getattr(gx.expectations, attr)
        if isinstance(obj, type) and issubclass(obj, Expectation) and attr.startswith("Expect"):
            names.append(getattr(obj, "expectation_type", None) or attr)
    return sorted(n for n in names if n.startswith("expect_"))


def expectation_class(type_name: str) -> type:
    """The GX 1.x expectation class for a snake-case ``type`` name.

    Raises :class:`SuiteError` naming the closest known types when there is none.

    Example:
        >>> expectation_class("expect_table_row_count_to_be_between").__name__
        'ExpectTableRowCountToBeBetween'
    """
    gx = _gx()  # first: sets the analytics default before GX is imported
    from great_expectations.expectations.expectation import Expectation

    cls = getattr(gx.expectations, _camel(type_name), None)
    if isinstance(cls, type) and issubclass(cls, Expectation):
        return cls
    close = difflib.get_close_matches(type_name, _known_types(), n=3)
    suggestion = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise SuiteError(
        f"Unknown expectation type {type_name!r}: Great Expectations 1.x has no "
        f"gx.expectations.{_camel(type_name)}.{suggestion}",
        hint="Use a GX Core 1.x expectation name such as 'expect_column_values_to_not_be_null' "
        "(see https://greatexpectations.io/expectations).",
    )


def build_suite(name: str, expectations: Sequence[Mapping[str, Any]]) -> Any:
    """A GX ``ExpectationSuite`` from our ``[{"type", "kwargs", "meta"?}]`` definitions."""
    gx = _gx()
    built = []
    for index, spec in enumerate(expectations):
        cls = expectation_class(spec["type"])
        kwargs = dict(spec.get("kwargs") or {})
        if spec.get("meta"):
            kwargs["meta"] = dict(spec["meta"])
        try:
            built.append(cls(**kwargs))
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            raise SuiteError(
                f"Suite {name!r}, expectation #{index} ({spec['type']}): invalid kwargs "
                f"{kwargs!r}: {_first_line(exc)}",
                hint=f"Pass the arguments gx.expectations.{cls.__name__} accepts, e.g. "
                "{'column': 'age', 'min_value': 0}.",
            ) from exc
    return gx.ExpectationSuite(name=name, expectations=built)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:400]


def run_suite(frame: pd.DataFrame, suite_name: str, expectations: Sequence[Mapping]) -> GxRun:
    """Validate ``frame`` against the suite in the shared context (serialised by a lock).

    Example:
        >>> import pandas as pd
        >>> run = run_suite(pd.DataFrame({"a": [1]}), "s",
        ...     [{"type": "expect_column_to_exist", "kwargs": {"column": "a"}}])
        >>> run.result.success
        True
    """
    gx_suite = build_suite(suite_name, expectations)
    from great_expectations.exceptions import GreatExpectationsError

    with _LOCK:
        try:
            batch = _state().batch_definition.get_batch(batch_parameters={"dataframe": frame})
            result = batch.validate(gx_suite)
        except GreatExpectationsError as exc:
            raise DataError(
                f"Great Expectations could not validate the data with suite {suite_name!r}: "
                f"{_first_line(exc)}",
                hint="Check that the data is a pandas DataFrame with the columns the suite names.",
            ) from exc
        finally:
            _release_batches()
        fingerprint = (batch.batch_markers or {}).get("pandas_data_fingerprint")
    ordered = _in_suite_order(gx_suite, result, suite_name)
    return GxRun(result=result, results=ordered, fingerprint=fingerprint)


def _release_batches() -> None:
    """Drop the execution engine's cached batches so the validated frame can be freed."""
    engine = _state().batch_definition.data_asset.datasource.get_execution_engine()
    engine.batch_manager.reset_batch_cache()
    engine.batch_manager.batch_data_cache.clear()


def _config_key(config: Any) -> str:
    data = config.to_json_dict()
    kwargs = {k: v for k, v in (data.get("kwargs") or {}).items() if k != "batch_id"}
    return json.dumps([data.get("type"), kwargs, data.get("meta")], sort_keys=True, default=str)


def _in_suite_order(gx_suite: Any, result: Any, suite_name: str) -> tuple[Any, ...]:
    by_key: dict[str, list[Any]] = defaultdict(list)
    for res in result.results:
        by_key[_config_key(res.expectation_config)].append(res)
    ordered = []
    for index, expectation in enumerate(gx_suite.expectations):
        matches = by_key.get(_config_key(expectation.configuration))
        if not matches:
            raise DataError(
                f"Suite {suite_name!r}: Great Expectations returned no result for expectation "
                f"#{index} ({expectation.expectation_type}).",
                hint="Report this with the suite file; it is a mismatch between mlops and GX.",
            )
        ordered.append(matches.pop(0))
    return tuple(ordered)


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of a DataFrame, computed like GX's ``pandas_data_fingerprint``.

    Example:
        >>> import pandas as pd
        >>> frame_fingerprint(pd.DataFrame({"a": [1]})) == frame_fingerprint(
        ...     pd.DataFrame({"a": [1]}))
        True
    """
    pd = require("pandas")
    try:
        payload = pd.util.hash_pandas_object(frame, index=True).values
    except TypeError:  # unhashable cells (dicts, lists): fall back to the pickle, as GX does
        payload = pickle.dumps(frame, pickle.HIGHEST_PROTOCOL)
    return hashlib.md5(payload, usedforsecurity=False).hexdigest()


def render_data_docs(result: Any) -> str:
    """GX's own Data Docs HTML page for one validation result (no context needed)."""
    _gx()
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    with _LOCK:
        document = ValidationResultsPageRenderer().render(result)
        return DefaultJinjaPageView().render(document)
