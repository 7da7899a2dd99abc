"""The ``mlops`` command line: the main job, the registry server, and the review flow.

Every review command talks to the registry server over HTTP (``--url`` or
``MLOPS_REGISTRY_URL``) with a bearer token (``--token`` or ``MLOPS_TOKEN``). Read
commands take ``--json``. Errors print ``code: message`` and a hint naming the ``mlops``
command to run next, and exit with 1 (2 for a wrong command line). The wrapped tools stay
quiet unless ``--verbose`` (or ``MLOPS_LOG_LEVEL=info``) asks for their output.

Example:
    $ mlops server --port 8765 &
    $ mlops token create alice --role approver
    $ mlops request churn 3 --to production
    $ mlops approve 1 -m "metrics look good"
    $ mlops status 1
"""

from __future__ import annotations

from typing import Annotated

import typer

from mlops import _quiet
from mlops.cli import (  # noqa: F401  (they register the commands)
    _admin,
    _lineage,
    _policy_server,
    _project,
    _review,
)
from mlops.cli._base import app

__all__ = ["app", "main"]


@app.callback()
def _options(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Show the wrapped tools' progress bars and INFO lines (MLOPS_LOG_LEVEL=info).",
        ),
    ] = False,
) -> None:
    """From versioned data to production through one gated flow."""
    _quiet.configure(verbose=verbose)


def main() -> None:
    """Console-script entry point."""
    _quiet.configure()
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
