"""The Typer apps, the shared options and the error handling every command goes through.

Example:
    >>> from mlops.cli._base import app
    >>> app.info.name
    'mlops'
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from mlops.cli._hints import cli_hint
from mlops.cli._output import console
from mlops.cli._policy import policy_app
from mlops.errors import MlopsError

if TYPE_CHECKING:
    from mlops.client import RegistryClient

__all__ = [
    "Json",
    "Token",
    "Url",
    "app",
    "audit_app",
    "client",
    "handles_errors",
    "key_app",
    "token_app",
]

app = typer.Typer(
    name="mlops",
    help="From versioned data to production through one gated flow.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
token_app = typer.Typer(help="Manage API tokens of the registry server.", no_args_is_help=True)
audit_app = typer.Typer(help="Read and verify the tamper-evident audit log.", no_args_is_help=True)
key_app = typer.Typer(
    help="The registry server's signing key (signed decisions, audit checkpoints).",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")
app.add_typer(key_app, name="key")
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")

F = TypeVar("F", bound=Callable[..., Any])

Url = Annotated[
    str | None,
    typer.Option("--url", envvar="MLOPS_REGISTRY_URL", help="Registry server URL."),
]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="MLOPS_TOKEN", help="Bearer token.", show_default=False),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def fail(err: MlopsError, command: str | None) -> None:
    """Print ``code: message`` and the CLI's hint for it on stderr, then exit 1."""
    from rich.markup import escape

    out = console(stderr=True)
    out.print(f"[bold red]{escape(err.code)}: {escape(err.message)}[/]")
    out.print(f"[red]hint: {escape(cli_hint(err.code, command=command))}[/]")
    raise typer.Exit(1)


def handles_errors(fn: F) -> F:
    """Turn an :class:`MlopsError` into ``code: message`` + a CLI hint on stderr, exit 1.

    The hint is the command line's own (:mod:`mlops.cli._hints`), never the REST route or
    the Python call the server or the library suggests to their own callers.
    """
    command = fn.__name__.rstrip("_")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MlopsError as err:
            fail(err, command)

    return wrapper  # type: ignore[return-value]


def client(url: str | None, token: str | None) -> RegistryClient:
    """A registry client for ``--url`` / ``--token`` (or their environment defaults)."""
    from mlops.client import RegistryClient

    return RegistryClient(url, token=token, timeout=60.0)  # a busy server is slow, not gone
