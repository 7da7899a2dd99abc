"""Child processes the library starts (``bentoml serve``, ``mlops server``): ports and stops.

Example:
    >>> port = free_port()
    >>> 1024 <= port <= 65535
    True
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from typing import Any

__all__ = ["free_port", "stop_group"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_group(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """Stop the process group of ``proc`` (started with ``start_new_session=True``):
    SIGTERM, then SIGKILL after ``timeout`` seconds. Idempotent."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
