"""BentoML for this process and its subprocesses: one store, and a served Bento.

:func:`_bentoml` imports BentoML with its home under ``MLOPS_HOME`` (unless
``BENTOML_HOME`` is set); ``bentoml`` subprocesses get the same store through
:func:`_tool_env`. :func:`serve` runs ``bentoml serve`` in its own process group and
stops it on exit; :func:`starting` yields before the server is ready, so the caller can work
while it loads. Import :func:`serve` from :mod:`mlops.packaging`.

Example:
    >>> from mlops.packaging import serve
    >>> with serve("iris:vdx2w3qd3kq5ph7w") as url:                       # doctest: +SKIP
    ...     httpx.get(f"{url}/readyz").status_code
    200
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops._optional import require
from mlops._procs import free_port, stop_group
from mlops.errors import PackagingError

__all__ = ["Starting", "bento_digest", "serve", "starting"]

_TAIL = 3000
READY_TIMEOUT = 180.0  # seconds a served Bento may take to answer /readyz


# --- the BentoML store --------------------------------------------------------------------
def _bentoml() -> Any:
    """Import bentoml with its home under MLOPS_HOME unless BENTOML_HOME is set."""
    if "BENTOML_HOME" not in os.environ:
        from mlops.config import load_settings

        os.environ["BENTOML_HOME"] = str((load_settings().home / "bentoml").resolve())
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    return require("bentoml")


# Variables that make rich (BentoML's console) colour output that is not a terminal, as a
# notebook kernel or a CI runner may set them; the tool's output is parsed, so it is plain.
_FORCED_COLOUR = ("FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def _tool_env() -> dict[str, str]:
    """Environment for ``bentoml`` subprocesses: the same store as this process, plain text."""
    _bentoml()
    from bentoml._internal.configuration.containers import BentoMLContainer

    env = {k: v for k, v in os.environ.items() if k not in _FORCED_COLOUR}
    return {**env, "NO_COLOR": "1", "BENTOML_HOME": BentoMLContainer.bentoml_home.get()}


def _store_path(bento_tag: str) -> Path:
    """Where the store keeps ``name:version`` (read without importing BentoML)."""
    if "BENTOML_HOME" in os.environ:
        home = Path(os.environ["BENTOML_HOME"])
    else:
        from mlops.config import load_settings

        home = load_settings().home / "bentoml"
    name, _, version = bento_tag.partition(":")
    return home / "bentos" / name.lower() / version


def bento_digest(bento_tag: str) -> str:
    """SHA-256 tree digest of a built Bento's folder in the local store.

    Taken when the Bento is built (it goes into the evidence) and again by ``mlops verify``:
    any file changed, added or removed gives another digest.

    Example:
        >>> bento_digest("iris-classifier:v3-5k2mqx4d")                  # doctest: +SKIP
        '0f3c...'
    """
    from mlops.signatures import tree_digest

    path = _store_path(bento_tag)
    if not bento_tag.count(":") == 1 or not (path / "bento.yaml").is_file():
        raise PackagingError(
            f"Bento {bento_tag!r} is not in the Bento store at {str(path.parent.parent)!r}.",
            hint="Build it (`mlops.package`) or point BENTOML_HOME at the store that has it.",
        )
    return tree_digest(path)


# --- serving ------------------------------------------------------------------------------
def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    httpx = require("httpx")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PackagingError(
                f"`bentoml serve` exited with {proc.returncode} before {url} was ready:\n"
                f"{log.read_text(errors='replace')[-_TAIL:]}",
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).is_success:
                return
        time.sleep(0.3)
    raise PackagingError(
        f"`bentoml serve` was not ready at {url} within {timeout:.0f}s:\n"
        f"{log.read_text(errors='replace')[-_TAIL:]}",
        hint="Read the server output above; a slow machine may need a larger `timeout`.",
    )


@dataclass
class Starting:
    """A ``bentoml serve`` process that was started and may not be ready yet."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:
        """Wait for ``/readyz``; the base URL, or :class:`PackagingError` naming why not."""
        _wait_ready(f"{self.url}/readyz", self.proc, self.log, timeout)
        return self.url


@contextlib.contextmanager
def starting(bento_tag: str, *, port: int | None = None) -> Iterator[Starting]:
    """Start ``bentoml serve <bento_tag>`` on a loopback port and yield at once.

    The caller does other work while the server loads, then calls
    :meth:`Starting.wait_ready`. The server (its whole process group) is stopped when the
    block exits, also on error.

    Example:
        >>> with starting("iris:vdx2w3qd3kq5ph7w") as server:              # doctest: +SKIP
        ...     expected = model.predict(frame)           # while the Bento loads
        ...     url = server.wait_ready()
    """
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="mlops-serve-"))
    log = workdir / "serve.log"
    cmd = [sys.executable, "-m", "bentoml", "serve", bento_tag]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=_tool_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield Starting(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
    finally:
        stop_group(proc)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def serve(
    bento_tag: str, *, port: int | None = None, timeout: float = READY_TIMEOUT
) -> Iterator[str]:
    """Run ``bentoml serve <bento_tag>`` on a loopback port; yield its base URL once ready.

    The server (its whole process group) is stopped when the block exits, also on error.

    Raises:
        PackagingError: the server exited or was not ready (``/readyz``) within ``timeout``.

    Example:
        >>> with serve("iris:vdx2w3qd3kq5ph7w") as url:                   # doctest: +SKIP
        ...     httpx.post(f"{url}/predict", json={"data": rows}).json()
        [0, 0, 2]
    """
    with starting(bento_tag, port=port) as server:
        yield server.wait_ready(timeout)
