"""Commands about the project on this machine: its stores, its versions, its served Bento.

``mlops env`` prints the exports that make MLflow's, BentoML's and DVC's own command lines
see the project's stores (``eval "$(mlops env)"``); ``mlops versions`` lists a model's
registered versions; ``mlops serve NAME@ALIAS`` serves the Bento recorded in the evidence
of the version that holds the alias.

Example:
    $ eval "$(mlops env)"
    $ mlflow experiments search
    $ bentoml list
    $ mlops serve iris-classifier@production
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated

import typer

from mlops.cli._base import Json, Token, Url, app, client, handles_errors
from mlops.cli._output import console, print_json, table
from mlops.errors import ConfigError


def project_root(start: Path | None = None) -> Path:
    """``MLOPS_DVC_ROOT``, else the nearest folder up from ``start`` holding ``.dvc/``.

    Falls back to ``start`` (the cwd) outside a DVC project.

    Example:
        >>> project_root(Path("/")).is_absolute()
        True
    """
    if os.environ.get("MLOPS_DVC_ROOT"):
        return Path(os.environ["MLOPS_DVC_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return here


def tool_env(root: Path) -> dict[str, str]:
    """The variables that point mlops, MLflow, BentoML and DVC at the project's stores.

    A relative ``MLOPS_HOME`` is taken from the project root, as the pipeline stages do.

    Example:
        >>> tool_env(Path("/p"))["BENTOML_HOME"] if "BENTOML_HOME" not in os.environ \\
        ...     and "MLOPS_HOME" not in os.environ else "/p/.mlops/bentoml"
        '/p/.mlops/bentoml'
    """
    home = Path(os.environ.get("MLOPS_HOME") or ".mlops")
    home = home if home.is_absolute() else root / home
    tracking = os.environ.get("MLOPS_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
    registry = os.environ.get("MLOPS_REGISTRY_URI") or tracking
    return {
        "MLOPS_HOME": str(home),
        "MLOPS_DVC_ROOT": str(root),
        "MLOPS_TRACKING_URI": tracking,
        "MLFLOW_TRACKING_URI": tracking,
        "MLFLOW_REGISTRY_URI": registry,
        "BENTOML_HOME": os.environ.get("BENTOML_HOME") or str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }


def _use_project_stores() -> None:
    """Read this project's stores, from anywhere inside it (what is set already stays)."""
    for key, value in tool_env(project_root()).items():
        if key in {"MLOPS_HOME", "MLOPS_TRACKING_URI", "BENTOML_HOME"}:
            os.environ.setdefault(key, value)


@app.command()
@handles_errors
def env(as_json: Json = False) -> None:
    """Print the exports that make mlflow, bentoml and dvc see this project's stores.

    Use it as `eval "$(mlops env)"`, from anywhere inside the project.
    """
    values = tool_env(project_root())
    if as_json:
        print_json(values)
        return
    for key, value in values.items():
        typer.echo(f"export {key}={shlex.quote(value)}")


@app.command()
@handles_errors
def versions(
    model: Annotated[str, typer.Argument(help="Registered model name.")], as_json: Json = False
) -> None:
    """List a model's registered versions (MLflow), newest first, with aliases and evidence."""
    from mlops import registry

    _use_project_stores()
    found = registry.versions(model)
    if as_json:
        print_json([mv.to_dict() for mv in found])
        return
    rows = [
        (
            mv.version,
            ", ".join(mv.aliases) or None,
            mv.tags.get("mlops.bento"),
            (mv.tags.get("mlops.evidence.digest") or "")[:12] or None,
            mv.run_id,
        )
        for mv in found
    ]
    headers = ["version", "aliases", "bento", "evidence", "run"]
    console().print(table(model, headers, rows))


@app.command()
@handles_errors
def serve(
    ref: Annotated[
        str, typer.Argument(metavar="NAME@ALIAS", help="e.g. iris-classifier@production")
    ],
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the Bento tag that would be served, and stop.")
    ] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Serve the Bento that was approved for an alias (the tag in its evidence).

    The version holding the alias is read from MLflow, the Bento tag from the evidence the
    approvals were bound to (the registry server's request for the alias; without a server,
    the evidence tagged on the version); the Bento must carry that version's labels.
    """
    _use_project_stores()
    from mlops.packaging import approved_bento

    if "@" not in ref:
        raise ConfigError(f"Expected NAME@ALIAS, got {ref!r}.", ref=ref)
    digest, source = _approved_digest(ref, url, token)
    tag = approved_bento(ref, digest=digest)
    console(stderr=True).print(f"serving {tag} ({ref}, evidence {source}) on http://{host}:{port}")
    if dry_run:
        typer.echo(tag)
        return
    import sys

    from mlops.packaging import bentoml_env  # the same store as the package step

    cmd = [sys.executable, "-m", "bentoml", "serve", tag, "--host", host, "--port", str(port)]
    os.execve(sys.executable, cmd, bentoml_env())


def _approved_digest(ref: str, url: str | None, token: str | None) -> tuple[str | None, str]:
    """The evidence digest the alias holder was approved with, and where it came from."""
    from mlops.errors import RegistryUnavailable

    model, _, alias = ref.rpartition("@")
    try:
        registry = client(url, token)
        holder = registry.alias(model, alias)
        if holder.request_id is None:
            return None, "tagged on the version"
        digest = registry.get_promotion(holder.request_id).evidence_digest
    except RegistryUnavailable:
        return None, "tagged on the version; registry server unreachable"
    return digest, f"approved in request #{holder.request_id}"
