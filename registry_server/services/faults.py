"""Crash points of the alias move and the verifier, armed only by a test setting (``fault_point``).

When ``MLOPS_REGISTRY_FAULT_POINT`` names a point, the server kills itself with SIGKILL
the moment it reaches it: no ``finally``, no rollback, exactly like a power cut. The
crash-safety tests restart the process and check that recovery ends in one alias move.

Example:
    >>> POINTS, VERIFY_POINTS
    (('after_intent', 'after_mlflow_set', 'after_final'), ('mid_verification',))
"""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry_server.services.context import ServerContext

__all__ = ["POINTS", "VERIFY_POINTS", "crash_here"]

#: the points of an alias move (promotion or rollback)
POINTS = ("after_intent", "after_mlflow_set", "after_final")
#: the point of a verification: re-derived, outcome not yet written
VERIFY_POINTS = ("mid_verification",)
log = logging.getLogger("registry_server")


def crash_here(ctx: ServerContext, point: str) -> None:
    """Kill this process now if ``point`` is the armed fault point (no-op otherwise)."""
    if ctx.fault_point != point:
        return
    log.error("fault point %s armed: killing process %d", point, os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)
