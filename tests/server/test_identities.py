"""People are compared by normalised identity: a second spelling of a name (case, trailing
space, fullwidth letters, zero-width characters, tabs) can neither approve its own request
nor count twice, whether the token came from ``POST /v1/tokens`` or ``mlops token create``,
on SQLite and PostgreSQL; migration 0005 settles names that already collide."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from mlops.cli import app
from mlops.errors import ConflictError
from registry_server.db.engine import Database, _alembic_config
from registry_server.db.models import Token, User
from registry_server.services.auth import create_token, hash_token
from tests.server.conftest import USERS, Server

runner = CliRunner()

ZWSP = "\u200b"
FULLWIDTH_CI_BOT = "\uff43\uff49\uff0d\uff42\uff4f\uff54"  # "ci-bot" in fullwidth letters
REFUSED = {
    "trailing space": "ci-bot ",
    "leading space": " ci-bot",
    "tab": "ci-bot\t",
    "newline": "ci-bot\n",
    "zero-width space": f"ci{ZWSP}-bot",
    "cyrillic es": "\u0441i-bot",  # looks like "ci-bot"
    "inner space": "ci bot",
    "nul": "ci\x00bot",
    "empty": "",
}


def _issue(server: Server, user: str, *roles: str) -> object:
    return server.post("/v1/tokens", "root", {"user": user, "roles": list(roles)})


def _users(server: Server) -> set[str]:
    items = server.client.get("/v1/tokens", headers=server.h("root")).json()["items"]
    return {t["user"] for t in items}


def _request(server: Server, name: str, user: str) -> int:
    version = server.model.register(name)
    digest = server.model.record(name, version)
    body = {"model": name, "version": version, "target": "production", "evidence_digest": digest}
    res = server.client.post("/v1/promotions", json=body, headers=server.h(user))
    assert res.status_code == 201, res.json()
    return res.json()["id"]


# --- token creation ---------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", list(REFUSED.values()), ids=list(REFUSED))
def test_token_for_a_name_with_invisible_or_foreign_characters_is_refused(
    server: Server, spelling: str
) -> None:
    res = _issue(server, spelling, "approver")
    assert res.status_code == 422, res.json()
    assert res.json()["code"] in {"gate_error", "invalid_request"}
    assert _users(server) == set(USERS)


@pytest.mark.parametrize("spelling", ["Ci-Bot", "CI-BOT", "ci-Bot"])
def test_second_spelling_of_an_existing_user_is_refused(server: Server, spelling: str) -> None:
    assert _issue(server, "ci-bot", "requester", "approver").status_code == 201
    res = _issue(server, spelling, "approver")
    assert res.status_code == 409, res.json()
    assert res.json()["code"] == "conflict"
    assert f"{spelling!r} collides with the existing user 'ci-bot'" in res.json()["message"]
    assert _users(server) == {*USERS, "ci-bot"}


def test_fullwidth_name_is_the_same_person_and_cannot_approve_own_request(
    server: Server, name: str
) -> None:
    bot = _issue(server, "ci-bot", "requester", "approver").json()["token"]
    wide = _issue(server, FULLWIDTH_CI_BOT, "approver").json()
    assert wide["user"] == "ci-bot"  # stored in NFKC form: one person, two tokens
    server.tokens["ci-bot"], server.tokens["wide"] = bot, wide["token"]
    rid = _request(server, name, "ci-bot")
    res = server.approve(rid, "wide")
    assert res.status_code == 403, res.json()
    assert "requested promotion" in res.json()["message"]


def test_revoked_then_recreated_name_keeps_its_identity(server: Server) -> None:
    first = _issue(server, "eve", "approver").json()
    assert (
        server.client.delete(f"/v1/tokens/{first['id']}", headers=server.h("root")).status_code
        == 204
    )
    assert _issue(server, "Eve", "approver").status_code == 409
    again = _issue(server, "eve", "approver")
    assert again.status_code == 201 and again.json()["user"] == "eve"


def test_cli_token_create_prints_the_stored_name(database_url: str) -> None:
    args = ["token", "create", FULLWIDTH_CI_BOT, "-r", "approver", "--database-url"]
    out = runner.invoke(app, [*args, database_url])
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines()[0].endswith(" for ci-bot [approver]:")


@pytest.mark.parametrize("spelling", ["Ci-Bot", "ci-bot "])
def test_cli_token_create_refuses_second_spellings(database_url: str, spelling: str) -> None:
    ok = runner.invoke(
        app, ["token", "create", "ci-bot", "-r", "approver", "--database-url", database_url]
    )
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(
        app, ["token", "create", spelling, "-r", "approver", "--database-url", database_url]
    )
    assert bad.exit_code == 1, bad.output
    code = "conflict" if spelling.strip() == spelling else "gate_error"
    assert bad.output.startswith(f"{code}: User name {spelling!r}"), bad.output
    assert "hint:" in bad.output


def test_concurrent_second_spelling_is_refused(server: Server) -> None:
    """Two admins creating ``Zed`` and ``zed`` at once: the unique identity decides."""
    outcome: dict[str, object] = {}

    def other() -> None:
        try:
            with server.ctx.db.session() as b:
                create_token(b, "zed", ["approver"])
            outcome["created"] = True
        except ConflictError as exc:
            outcome["error"] = exc

    with server.ctx.db.session() as a:
        create_token(a, "Zed", ["approver"])
        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.5)  # the other creation runs into this uncommitted one
    thread.join(30)
    assert "created" not in outcome
    error = outcome["error"]
    assert isinstance(error, ConflictError)
    assert re.match(
        r"User name 'zed' collides with (the existing user 'Zed'|a user created)", error.message
    )
    assert _users(server) == {*USERS, "Zed"}


# --- the rules compare identities, also for rows made by older versions ----------------------
def _legacy_user(server: Server, user: str, *roles: str) -> str:
    """A user and token written as an older version did: no name check, no identity."""
    token = uuid.uuid4().hex
    now = datetime.now(UTC)
    with server.ctx.db.session() as s:
        s.add(User(name=user, created_at=now))
        s.flush()
        s.add(
            Token(
                id=uuid.uuid4().hex,
                user=user,
                roles=list(roles),
                token_hash=hash_token(token),
                created_at=now,
            )
        )
    server.tokens[user] = token
    return token


@pytest.mark.parametrize("twin", ["Ci-Bot", "ci-bot ", f"ci-bot{ZWSP}", "ci-bot\t", "CI-BOT\n"])
def test_second_spelling_cannot_approve_own_request(server: Server, name: str, twin: str) -> None:
    _legacy_user(server, "ci-bot", "requester", "approver")
    _legacy_user(server, twin, "approver")
    rid = _request(server, name, "ci-bot")
    res = server.approve(rid, twin)
    assert res.status_code == 403, res.json()
    assert res.json()["message"].endswith(f"requested promotion {rid} and may not approve it.")
    assert server.approve(rid, "ann").json()["state"] == "pending"
    assert server.client.get(f"/v1/promotions/{rid}").json()["quorum"] == {"have": 1, "need": 2}


def test_two_spellings_cannot_promote_their_own_request(server: Server, name: str) -> None:
    """The finding as reported: tokens for ``Ci-Bot`` and ``ci-bot `` promoted ``ci-bot``'s
    own request. Both are the requester now, and the alias does not move."""
    _legacy_user(server, "ci-bot", "requester")
    _legacy_user(server, "Ci-Bot", "approver")
    _legacy_user(server, "ci-bot ", "approver")
    rid = _request(server, name, "ci-bot")
    for twin in ("Ci-Bot", "ci-bot "):
        res = server.approve(rid, twin)
        assert res.status_code == 403 and res.json()["code"] == "forbidden", res.json()
    body = server.client.get(f"/v1/promotions/{rid}").json()
    assert body["state"] == "pending" and body["approvals"] == []
    assert server.model.client().get_registered_model(name).aliases == {}


@pytest.mark.parametrize("twin", ["ANN", "ann ", f"a{ZWSP}nn"])
def test_second_spelling_of_an_approver_counts_once(server: Server, name: str, twin: str) -> None:
    _legacy_user(server, twin, "approver")
    rid = _request(server, name, "rita")
    assert server.approve(rid, "ann").json()["quorum"] == {"have": 1, "need": 2}
    res = server.approve(rid, twin)
    assert res.status_code == 409, res.json()
    assert res.json()["message"] == f"User {twin!r} already approved promotion {rid}."
    body = server.client.get(f"/v1/promotions/{rid}").json()
    assert body["state"] == "pending" and body["quorum"] == {"have": 1, "need": 2}
    assert server.model.client().get_registered_model(name).aliases == {}


def test_same_person_may_supersede_own_request_under_another_spelling(
    server: Server, name: str
) -> None:
    _legacy_user(server, "Rita", "requester")
    first = _request(server, name, "rita")
    second = _request(server, name, "Rita")
    assert server.client.get(f"/v1/promotions/{first}").json()["state"] == "superseded"
    assert server.client.get(f"/v1/promotions/{second}").json()["state"] == "pending"


# --- migration 0005 ---------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database no migration has touched yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'legacy.db'}"
        return
    import psycopg

    name = f"mlops_legacy_{uuid.uuid4().hex[:8]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(db: Database, revision: str) -> None:
    with db.engine.begin() as conn:
        cfg = _alembic_config(db.url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_migration_0005_keeps_the_oldest_spelling_and_revokes_later_twins(
    empty_database: str,
) -> None:
    db = Database(empty_database)
    try:
        _migrate(db, "0004")
        # the twins are created after "ci-bot", so it keeps the identity whatever the names
        rows = [("Ci-Bot", 2), ("ci-bot ", 3), ("ci-bot", 1), ("ann", 4), (f"b{ZWSP}ob", 5)]
        users = sa.table("users", sa.column("name"), sa.column("created_at"))
        with db.engine.begin() as conn:
            for user, day in rows:
                at = datetime(2026, 1, day, tzinfo=UTC)
                conn.execute(users.insert().values(name=user, created_at=at))
                token = {"id": uuid.uuid4().hex, "user": user, "roles": ["approver"]}
                conn.execute(
                    Token.__table__.insert().values(
                        **token, token_hash=hash_token(user), created_at=at
                    )
                )
        _migrate(db, "0005")
        with db.engine.connect() as conn:
            identity = dict(conn.execute(text("SELECT name, identity FROM users")).all())
            revoked = {
                u: r is not None
                for u, r in conn.execute(text('SELECT "user", revoked_at FROM tokens'))
            }
        bob = f"b{ZWSP}ob"
        assert identity == {
            "ci-bot": "ci-bot",
            "Ci-Bot": None,
            "ci-bot ": None,
            "ann": "ann",
            bob: "bob",
        }
        assert revoked == {
            "ci-bot": False,
            "Ci-Bot": True,
            "ci-bot ": True,
            "ann": False,
            bob: False,
        }
        insert = text("INSERT INTO users (name, created_at, identity) VALUES ('CI-BOT', :at, :i)")
        with db.engine.begin() as conn, pytest.raises(IntegrityError, match=r"(?i)unique"):
            conn.execute(insert, {"at": datetime(2026, 2, 1, tzinfo=UTC), "i": "ci-bot"})
    finally:
        db.dispose()
