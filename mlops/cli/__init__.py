"""The ``mlops`` command line (entry point ``mlops.cli:main``).

Example:
    $ mlops server --port 8765 &
    $ mlops request churn 3 --to production
"""

from mlops.cli._app import app, main

__all__ = ["app", "main"]
