"""Commands that run things locally: the quickstart, the server, token bootstrap, ``me``.

Example:
    $ mlops server --port 8765 &
    $ mlops token create alice --role approver
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from mlops.cli._base import Json, Token, Url, app, client, handles_errors, key_app, token_app
from mlops.cli._output import console, print_json, table
from mlops.errors import ConfigError


@app.command()
def quickstart(
    workdir: str = typer.Option(
        None, help="Where to build the throwaway workspace (default: a temporary folder)."
    ),
) -> None:
    """Run the main job end to end on embedded defaults."""
    from mlops.quickstart import run_quickstart

    raise typer.Exit(run_quickstart(workdir=workdir))


# --- the server and tokens (direct, no HTTP) -------------------------------------------
@app.command()
@handles_errors
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
    check_port_free(settings.host, settings.port)
    console(stderr=True).print(
        f"mlops registry server on http://{settings.host}:{settings.port} "
        f"(database {redact(settings.database_url)})"
    )
    registry_server.run(settings)


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`ConfigError` naming the port if something already listens on it.

    Example:
        >>> check_port_free("127.0.0.1", 0)
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            why = "is already in use" if exc.errno == errno.EADDRINUSE else f"is not usable: {exc}"
            raise ConfigError(
                f"Port {port} on {host} {why}.",
                hint="Pick another port (--port) or stop the process that holds it.",
                port=port,
            ) from exc


def redact(url: str) -> str:
    """Hide a password in a database URL.

    Example:
        >>> redact("postgresql://u:secret@h/db")
        'postgresql://u:***@h/db'
    """
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, creds = head.partition("//")
    return f"{scheme}//{creds.split(':', 1)[0]}:***@{tail}"


@token_app.command("create")
@handles_errors
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
        print_json(created)
        return
    out = console()
    out.print(
        escape(f"token {created['id']} for {created['user']} [{', '.join(created['roles'])}]:")
    )
    typer.echo(created["token"])
    out.print("[yellow]Store it now: it is not shown again.[/]")


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
            f"Cannot write the token to the server database {redact(url)!r}: "
            f"{type(exc).__name__}: {exc.orig if hasattr(exc, 'orig') else exc}.",
            hint="Check --database-url (or MLOPS_REGISTRY_DATABASE_URL) and that the "
            "database is reachable.",
        ) from exc
    finally:
        db.dispose()
    return issued.to_dict()


@token_app.command("list")
@handles_errors
def token_list(url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """List the tokens (admin)."""
    tokens = client(url, token).tokens()
    if as_json:
        print_json([t.to_dict() for t in tokens])
        return
    rows = [(t.id, t.user, ", ".join(t.roles), t.created_at, t.revoked) for t in tokens]
    console().print(
        table(
            "tokens",
            ["id", "user", "roles", "created", "revoked"],
            rows,
            wrap=["created"],
            optional=["created"],
        )
    )


@token_app.command("revoke")
@handles_errors
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="Token id (from `mlops token list`).")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Revoke a token (admin)."""
    from rich.markup import escape

    client(url, token).revoke_token(token_id)
    console().print(f"token {escape(token_id)} revoked")


@app.command()
@handles_errors
def me(url: Url = None, token: Token = None, as_json: Json = False) -> None:
    """Show who the token belongs to."""
    from rich.markup import escape

    identity = client(url, token).me()
    if as_json:
        print_json(identity.to_dict())
    else:
        console().print(escape(str(identity)))


# --- signed decisions ---------------------------------------------------------------------
@key_app.command("create")
@handles_errors
def key_create(
    path: Annotated[Path, typer.Argument(help="Where to write the private key (PEM, 0600).")],
) -> None:
    """Create the server's Ed25519 signing key file; print its public key (also FILE.pub).

    Point the server at it with MLOPS_REGISTRY_SIGNING_KEY_FILE=FILE; give FILE.pub to
    whoever runs `mlops verify`.
    """
    from mlops.signatures import load_private_pem, public_pem
    from registry_server.signing import write_key_file

    write_key_file(path)
    public = public_pem(load_private_pem(path.read_bytes(), where=str(path)))
    public_file = path.with_name(path.name + ".pub")
    public_file.write_text(public)
    console(stderr=True).print(
        f"signing key written to {path} (keep it secret); public key in {public_file}:"
    )
    typer.echo(public, nl=False)


@app.command()
@handles_errors
def verify(
    ref: Annotated[str, typer.Argument(help="NAME@ALIAS, e.g. churn@production.")],
    key: Annotated[
        Path,
        typer.Option(
            "--key",
            envvar="MLOPS_VERIFY_KEY",
            help="The registry server's public key (PEM): `mlops key create` wrote it, "
            "GET /v1/keys serves it.",
        ),
    ],
    bento: Annotated[bool, typer.Option(help="Check the Bento in the local store too.")] = True,
    as_json: Json = False,
) -> None:
    """Check offline that NAME@ALIAS is what the server signed: model files, Bento,
    evidence, data and approvals; exit 1 naming the first link that fails."""
    from mlops.attestation import verify as verify_ref

    checked = verify_ref(ref, key=key, bento=bento)
    if as_json:
        print_json(
            {
                "ok": True,
                "model": checked.model,
                "alias": checked.alias,
                "version": checked.version,
                "action": checked.action,
                "statement_digest": checked.statement_digest,
                "key_id": checked.key_id,
                "links": [{"link": n, "checked": d} for n, d in checked.links],
            }
        )
        return
    console().print(str(checked), markup=False)
