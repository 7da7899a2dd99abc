"""``mlops quickstart``: the whole gated flow, end to end, in a throwaway workspace.

Example:
    >>> from mlops.quickstart import run_quickstart
    >>> run_quickstart(workdir="/tmp/qs")  # doctest: +SKIP
    0
"""

from mlops.quickstart._run import MODEL_NAME, SUMMARY_FILE, TARGET, USERS, run_quickstart
from mlops.quickstart._sandbox import (
    BIN,
    PIPELINE_DIRS,
    PIPELINE_FILES,
    QuickstartError,
    RegistryProcess,
    Workspace,
    commit,
    create_token,
    create_workspace,
    start_registry,
)

__all__ = [
    "BIN",
    "MODEL_NAME",
    "PIPELINE_DIRS",
    "PIPELINE_FILES",
    "SUMMARY_FILE",
    "TARGET",
    "USERS",
    "QuickstartError",
    "RegistryProcess",
    "Workspace",
    "commit",
    "create_token",
    "create_workspace",
    "run_quickstart",
    "start_registry",
]
