"""An ``MlflowClient`` wrapper that counts the calls made through it, by method name.

``benchmarks/scale.py`` reports the counts of a sweep; ``tests/server/test_scale.py``
asserts them. Both put it in place of the gateway's client.

Example:
    >>> counting = CountingClient(MlflowClient(uri))  # doctest: +SKIP
    >>> gateway._client = counting  # doctest: +SKIP
    >>> dict(counting.calls)  # doctest: +SKIP
    {'search_registered_models': 2}
"""

from __future__ import annotations

import collections
from typing import Any


class CountingClient:
    """An ``MlflowClient`` that counts the calls made through it, by method."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, collections.Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return call
