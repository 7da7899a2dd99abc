"""The ``mlops`` command line: the main job, the registry server, and the review flow.

Every review command talks to the registry server over HTTP (``--url`` or
``MLOPS_REGISTRY_URL``) with a bearer token (``--token`` or ``MLOPS_TOKEN``). Read
commands take ``--json``. Errors print ``code: message`` and a hint, and exit with 1
(2 for a wrong command line).

Example:
    $ mlops server --port 8765 &
    $ mlops token create alice --role approver
    $ mlops request churn 3 --to production
    $ mlops approve 1 -m "metrics look good"
    $ mlops status 1
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from mlops.errors import ConfigError, MlopsError

if TYPE_CHECKING:
    from rich.console import Console

    from mlops.client import AliasHolder, Promotion, RegistryClient

app = typer.Typer(
    name="mlops",
    help="From versioned data to production through one gated flow.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
token_app = typer.Typer(help="Manage API tokens of the registry server.", no_args_is_help=True)
audit_app = typer.Typer(help="Read and verify the tamper-evident audit log.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")

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


@app.command()
def quickstart(
    workdir: str = typer.Option(
        None, help="Where to build the throwaway workspace (default: a temporary folder)."
    ),
) -> None:
    """Run the main job end to end on embedded defaults."""
    from mlops.quickstart import run_quickstart

    raise typer.Exit(run_quickstart(workdir=workdir))


# --- plumbing ---------------------------------------------------------------------------
def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fail(err: MlopsError) -> None:
    from rich.markup import escape

    console = _console(stderr=True)
    console.print(f"[bold red]{escape(err.code)}: {escape(err.message)}[/]")
    if err.hint:
        console.print(f"[red]hint: {escape(err.hint)}[/]")
    raise typer.Exit(1)


def _handles_errors(fn: F) -> F:
    """Turn an :class:`MlopsError` into ``code: message`` + hint on stderr and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MlopsError as err:
            _fail(err)

    return wrapper  # type: ignore[return-value]


def _client(url: str | None, token: str | None) -> RegistryClient:
    from mlops.client import RegistryClient

    return RegistryClient(url, token=token)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _table(title: str, headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    return table


def _show_promotion(p: Promotion, *, as_json: bool) -> None:
    if as_json:
        _print_json(p.to_dict())
        return
    from rich.markup import escape

    console = _console()
    colour = {"promoted": "green", "approved": "green", "pending": "yellow"}.get(p.state, "red")
    console.print(
        f"[bold]promotion #{p.id}[/]: {escape(p.model)} v{p.version} -> {escape(p.target)} "
        f"[{colour}]{p.state}[/]  approvals {p.quorum}  requester {escape(p.requester)}"
    )
    console.print(f"evidence {p.evidence_digest}")
    for reason in p.blocked_by if not p.final else ():
        console.print(f"[yellow]blocked: {escape(reason)}[/]")
    if p.rules:
        rows = [(r.rule, "ok" if r.passed else "FAIL", r.reason) for r in p.rules]
        console.print(_table("checks", ["rule", "", "reason"], rows))
    if p.approvals:
        rows = [
            (a.user, a.decision, a.at, "yes" if a.counts else f"no: {a.why_not}", a.comment)
            for a in p.approvals
        ]
        console.print(_table("decisions", ["user", "decision", "at", "counts", "comment"], rows))


def _show_holder(h: AliasHolder, *, as_json: bool) -> None:
    if as_json:
        _print_json(h.to_dict())
    else:
        _console().print(str(h))


# --- the server and tokens (direct, no HTTP) -------------------------------------------
@app.command()
@_handles_errors
def server(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of the server database.")
    ] = None,
) -> None:
    """Run the registry server (the approval gate) in the foreground."""
    import registry_server
    from registry_server.settings import load_registry_settings

    options = {"host": host, "port": port, "workers": workers, "database_url": database_url}
    settings = load_registry_settings(**{k: v for k, v in options.items() if v is not None})
    _console(stderr=True).print(
        f"mlops registry server on http://{settings.host}:{settings.port} "
        f"(database {_redact(settings.database_url)})"
    )
    registry_server.run(settings)


def _redact(url: str) -> str:
    """Hide a password in a database URL."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, creds = head.partition("//")
    return f"{scheme}//{creds.split(':', 1)[0]}:***@{tail}"


@token_app.command("create")
@_handles_errors
def token_create(
    role: Annotated[
        list[str], typer.Option("--role", "-r", help="Role (repeatable): requester/approver/admin.")
    ],
    user: Annotated[
        str | None, typer.Argument(help="Who the token is for.", show_default=False)
    ] = None,
    user_option: Annotated[
        str | None, typer.Option("--user", "-u", help="Same as USER.", show_default=False)
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Server database (default: MLOPS_REGISTRY_DATABASE_URL).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Create a token directly in the server database and print it (shown only once)."""
    from rich.markup import escape

    if (user and user_option and user != user_option) or not (user or user_option):
        raise typer.BadParameter(
            f"Give the user once, as USER or --user (got {user!r} and {user_option!r}).",
            param_hint="USER",
        )
    name = user or user_option or ""
    created = _create_token_in_db(name, role, database_url)
    if as_json:
        _print_json(created)
        return
    console = _console()
    console.print(
        escape(f"token {created['id']} for {created['user']} [{', '.join(created['roles'])}]:")
    )
    typer.echo(created["token"])
    console.print("[yellow]Store it now: it is not shown again.[/]")


def _create_token_in_db(user: str, roles: list[str], database_url: str | None) -> dict[str, Any]:
    """The bootstrap path: write the token (and its audit event) straight to the database."""
    import getpass
    from datetime import UTC, datetime

    from sqlalchemy.exc import SQLAlchemyError

    from registry_server.db.engine import Database
    from registry_server.services.audit import append
    from registry_server.settings import load_registry_settings
    from registry_server.tokens import create_token

    url = database_url or load_registry_settings().database_url
    db = Database(url)
    try:
        db.upgrade()
        with db.session() as session:
            issued = create_token(session, user, roles)
            payload = {"token_id": issued.id, "user": issued.user, "roles": list(issued.roles)}
            actor = f"cli:{getpass.getuser()}"
            append(
                session, actor=actor, action="token_created", payload=payload, at=datetime.now(UTC)
            )
    except SQLAlchemyError as exc:
        raise ConfigError(
            f"Cannot write the token to the server database {_redact(url)!r}: "
            f"{type(exc).__name__}: {exc.orig if hasattr(exc, 'orig') else exc}.",
            hint="Check --database-url (or MLOPS_REGISTRY_DATABASE_URL) and that the "
            "database is reachable.",
        ) from exc
    finally:
        db.dispose()
    return issued.to_dict()


@token_app.command("list")
@_handles_errors
def token_list(url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """List the tokens (admin)."""
    tokens = _client(url, token).tokens()
    if as_json:
        _print_json([t.to_dict() for t in tokens])
        return
    rows = [(t.id, t.user, ", ".join(t.roles), t.created_at, t.revoked) for t in tokens]
    _console().print(_table("tokens", ["id", "user", "roles", "created", "revoked"], rows))


@token_app.command("revoke")
@_handles_errors
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="Token id (from `mlops token list`).")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Revoke a token (admin)."""
    _client(url, token).revoke_token(token_id)
    _console().print(f"token {token_id} revoked")


@app.command()
@_handles_errors
def me(url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """Show who the token belongs to."""
    identity = _client(url, token).me()
    _print_json(identity.to_dict()) if as_json else _console().print(str(identity))


# --- promotion requests -------------------------------------------------------------------
@app.command()
@_handles_errors
def request(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[int, typer.Argument(help="Model version.")],
    to: Annotated[str, typer.Option("--to", help="Target alias, e.g. production.")],
    digest: Annotated[
        str | None, typer.Option(help="Evidence digest (default: the version's tag).")
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Request a promotion, bound to the evidence recorded on the version."""
    from mlops.promotion import recorded_digest

    digest = digest or recorded_digest(model, version)
    promotion = _client(url, token).request_promotion(model, version, to, digest)
    _show_promotion(promotion, as_json=as_json)


@app.command()
@_handles_errors
def approve(
    promotion_id: Annotated[str, typer.Argument(metavar="ID", help="Promotion request id.")],
    message: Annotated[str, typer.Option("--message", "-m", help="Comment.")] = "",
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Approve a promotion request."""
    promotion = _client(url, token).approve(promotion_id, comment=message)
    _show_promotion(promotion, as_json=as_json)


@app.command()
@_handles_errors
def reject(
    promotion_id: Annotated[str, typer.Argument(metavar="ID", help="Promotion request id.")],
    message: Annotated[str, typer.Option("--message", "-m", help="Why (required).")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Reject a promotion request, saying why."""
    promotion = _client(url, token).reject(promotion_id, comment=message)
    _show_promotion(promotion, as_json=as_json)


@app.command()
@_handles_errors
def cancel(
    promotion_id: Annotated[str, typer.Argument(metavar="ID", help="Promotion request id.")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Cancel your own pending request."""
    _show_promotion(_client(url, token).cancel(promotion_id), as_json=as_json)


@app.command()
@_handles_errors
def status(
    promotion_id: Annotated[str, typer.Argument(metavar="ID", help="Promotion request id.")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Show a request: state, approvals, checks and what blocks it."""
    _show_promotion(_client(url, token).get_promotion(promotion_id), as_json=as_json)


@app.command("list")
@_handles_errors
def list_(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    target: Annotated[str | None, typer.Option(help="Only this target alias.")] = None,
    state: Annotated[str | None, typer.Option(help="Only this state, e.g. pending.")] = None,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """List promotion requests."""
    items = list(_client(url, token).list_promotions(model=model, target=target, state=state))
    if as_json:
        _print_json([p.to_dict() for p in items])
        return
    rows = [
        (p.id, p.model, p.version, p.target, p.state, str(p.quorum), p.requester, p.created_at)
        for p in items
    ]
    headers = ["id", "model", "version", "target", "state", "approvals", "requester", "created"]
    _console().print(_table("promotions", headers, rows))


# --- aliases and audit ----------------------------------------------------------------------
@app.command()
@_handles_errors
def alias(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias, e.g. production.")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Show which version holds an alias now."""
    _show_holder(_client(url, token).alias(model, name), as_json=as_json)


@app.command()
@_handles_errors
def history(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias, e.g. production.")],
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Show every version that held an alias, from when to when."""
    moves = _client(url, token).history(model, name)
    if as_json:
        _print_json([m.to_dict() for m in moves])
        return
    rows = [(m.version, m.action, m.start, m.end or "now", m.request_id) for m in moves]
    headers = ["version", "action", "from", "to", "request"]
    _console().print(_table(f"{model}@{name}", headers, rows))


@app.command()
@_handles_errors
def rollback(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias, e.g. production.")],
    message: Annotated[str, typer.Option("--message", "-m", help="Why.")] = "",
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Move an alias back to the version that held it before."""
    _show_holder(_client(url, token).rollback(model, name, comment=message), as_json=as_json)


@audit_app.command("verify")
@_handles_errors
def audit_verify(url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """Recompute the audit hash chain; exit 1 if it is broken."""
    check = _client(url, token).verify_audit()
    if as_json:
        _print_json(check.to_dict())
    else:
        _console().print(f"[{'green' if check.ok else 'bold red'}]{check}[/]")
    if not check.ok:
        raise typer.Exit(1)


@audit_app.command("list")
@_handles_errors
def audit_list(
    after: Annotated[int | None, typer.Option(help="Only events after this id.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 50,
    url: Url = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Show audit events, oldest first."""
    events = _client(url, token).audit(after=after, limit=limit)
    if as_json:
        _print_json([e.to_dict() for e in events])
        return
    rows = [(e.id, e.at, e.actor, e.action) for e in events]
    _console().print(_table("audit", ["id", "at", "actor", "action"], rows))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
