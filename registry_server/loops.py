"""Background loops that never die: every pass is guarded, failures back off, state is kept.

A loop runs ``work`` in a thread every ``interval`` seconds. Any exception of a pass is
logged and counted, and the next pass waits longer (doubling, capped); the loop itself only
ends when the server stops. :class:`LoopHealth` is what ``/readyz`` reports: a loop whose
task ended (it should never) makes the server not ready.

Example:
    >>> health = LoopHealth("reconcile", interval=30.0)
    >>> health.report()["alive"]
    False
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlops.errors import MlopsError

__all__ = ["LoopHealth", "run_loop"]

log = logging.getLogger("registry_server")


@dataclass
class LoopHealth:
    """The state of one background loop, as ``/readyz`` shows it."""

    name: str
    interval: float
    task: asyncio.Task | None = None
    passes: int = 0
    failures: int = 0  # consecutive
    last_ok: float | None = None
    last_error: str | None = None
    last_result: Any = None
    started: float = field(default_factory=time.time)
    max_delay: float = 300.0  # the longest wait after failures (or the interval, if longer)

    @property
    def alive(self) -> bool:
        """True while the loop's task runs."""
        return self.task is not None and not self.task.done()

    def delay(self) -> float:
        """Seconds to the next pass: the interval, doubled per consecutive failure."""
        if not self.failures:
            return self.interval
        return min(self.interval * 2 ** min(self.failures, 10), max(self.interval, self.max_delay))

    def report(self) -> dict[str, Any]:
        """``{"alive", "passes", "failures", "last_ok", "last_error"}`` for ``/readyz``."""
        return {
            "alive": self.alive,
            "passes": self.passes,
            "failures": self.failures,
            "last_ok_s_ago": round(time.time() - self.last_ok, 1) if self.last_ok else None,
            "last_error": self.last_error,
        }


async def run_loop(health: LoopHealth, work: Callable[[], Any]) -> None:
    """Run ``work`` in a thread forever; no exception of a pass ends the loop."""
    while True:
        try:
            health.last_result = await asyncio.to_thread(work)
        except Exception as exc:  # a dead loop repairs nothing: log, back off, go on
            health.failures += 1
            health.last_error = f"{type(exc).__name__}: {exc}"[:500]
            if isinstance(exc, MlopsError):
                log.warning("%s pass failed (retried): %s", health.name, exc)
            else:
                log.exception("%s pass failed unexpectedly (retried)", health.name)
        else:
            health.failures, health.last_error, health.last_ok = 0, None, time.time()
        health.passes += 1
        await asyncio.sleep(health.delay())
