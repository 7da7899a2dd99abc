"""What keeps the server fast over a big registry: the sweep reads MLflow a page at a time
(never two reads per model), the request list pages by keyset from an index, and the
audit verification streams the chain. Real MLflow; server on SQLite and PostgreSQL."""

from __future__ import annotations

import collections
import contextlib
import math
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from benchmarks._counting import CountingClient
from registry_server.services import audit
from registry_server.services.drift import reconcile_protected
from tests.server.conftest import Server
from tests.server.test_drift import _events, _promote
from tests.server.test_ladder import to_staging


@pytest.fixture
def counted(server: Server, monkeypatch: pytest.MonkeyPatch) -> collections.Counter:
    counting = CountingClient(server.ctx.gateway.client)
    monkeypatch.setattr(server.ctx.gateway, "_client", counting)
    return counting.calls


def test_cold_sweep_reads_holders_by_page_not_per_model(
    server: Server, name: str, counted: collections.Counter
) -> None:
    models = [f"{name}-{i}" for i in range(3)]
    for model in models:
        _promote(server, model)
    total = len(server.model.client().search_registered_models(max_results=1000))
    server.ctx.alias_checks.clear()  # a fresh process: no holder verified yet
    counted.clear()

    assert reconcile_protected(server.ctx, page_size=2) == 0

    pages = math.ceil(total / 2)
    assert counted["search_registered_models"] == pages
    assert 1 <= counted["search_model_versions"] <= pages  # the holders, read a page at once
    assert counted["get_registered_model"] == counted["get_model_version"] == 0
    counted.clear()
    assert reconcile_protected(server.ctx, page_size=2) == 0  # warm: nothing changed
    assert dict(counted) == {"search_registered_models": pages}


def test_cold_sweep_still_finds_a_holder_whose_identity_changed(
    server: Server, name: str, counted: collections.Counter
) -> None:
    kept, changed = f"{name}-kept", f"{name}-changed"
    _promote(server, kept)
    version = _promote(server, changed)
    server.model.client().set_model_version_tag(
        changed, str(version), "mlops.evidence.digest", "f" * 64
    )
    server.ctx.alias_checks.clear()
    counted.clear()

    assert reconcile_protected(server.ctx, page_size=500) == 1

    [missing] = _events(server, "alias_holder_missing", changed)
    assert "evidence digest 'ffff" in missing["payload"]["problem"]
    assert _events(server, "alias_holder_missing", kept) == []
    # found by the page's search; read on its own only once, under the lock, before writing
    assert counted["get_model_version"] == counted["get_registered_model"] == 1


def test_pending_list_pages_by_keyset(server: Server, name: str) -> None:
    ids = []
    for i in range(5):
        model = f"{name}-{i}"
        version = server.model.register(model)
        res = server.request(model, version, server.model.record(model, version))
        assert res.status_code == 201, res.json()
        ids.append(res.json()["id"])
    seen, before = [], None
    while True:
        params: dict[str, Any] = {"state": "pending", "limit": 2}
        if before is not None:
            params["before"] = before
        page = server.client.get("/v1/promotions", params=params).json()
        seen += [p["id"] for p in page["items"] if p["id"] in ids]
        before = page["next_before"]
        if before is None:
            break
        assert page["items"][-1]["id"] == before and len(page["items"]) == 2
    assert seen == ids[::-1]
    res = server.client.get("/v1/promotions", params={"before": 0})
    assert res.status_code == 422 and "before" in res.text


def test_pending_list_reads_the_state_index(server: Server) -> None:
    """A state's newest page comes straight from ``(state, id)``: no sort of the state."""
    sqlite = server.ctx.db.is_sqlite
    query = "SELECT id FROM promotion_requests WHERE state = 'pending' ORDER BY id DESC LIMIT 50"
    with server.ctx.db.engine.connect() as conn:
        if not sqlite:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # tiny table: plan as if big
        rows = conn.exec_driver_sql(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + query)
        plan = " ".join(str(r[-1]) for r in rows)
    assert "ix_promotion_state_id" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


@pytest.mark.parametrize(
    "payload",
    [
        {"who": "Zoë 名前", "quote": 'a "b" \\ c', "ctl": "\u001f\u2028", "n": [1, 2.5, None]},
        {"nan": float("nan"), "big": 10**20, "nested": {"z": 1, "a": [True, False]}},
    ],
)
def test_audit_verify_accepts_every_payload_it_wrote(server: Server, payload: dict) -> None:
    with server.ctx.db.session() as s:
        audit.append(s, actor="ünï 'x'", action="approval", payload=payload, at=server.ctx.now())
    with server.ctx.db.read_sessions() as s:
        result = audit.verify(s)
    assert result["ok"] is True, result


@contextlib.contextmanager
def _watching(srv: Server) -> Iterator[list[str]]:
    """The SQL statements ``srv`` sends in the block, on its write and read engines."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engines = {srv.ctx.db.engine, srv.ctx.db.read_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", note)


@pytest.fixture
def statements(server: Server) -> Iterator[list[str]]:
    """The SQL statements the server sends from now on, on its write and read engines."""
    with _watching(server) as seen:
        yield seen


def test_a_list_page_costs_the_same_statements_however_many_rows_it_has(
    server: Server, name: str, statements: list[str]
) -> None:
    """Each row's approvals, alias move and verification are read for the page at once."""
    for i in range(6):
        model = f"{name}-{i}"
        version = server.model.register(model)
        res = server.request(model, version, server.model.record(model, version))
        assert res.status_code == 201, res.json()
    server.client.get("/v1/promotions", params={"state": "pending", "limit": 1})  # warm
    cost = {}
    for limit in (1, 6):
        statements.clear()
        page = server.client.get("/v1/promotions", params={"state": "pending", "limit": limit})
        assert len(page.json()["items"]) == limit
        cost[limit] = list(statements)

    assert len(cost[6]) == len(cost[1]), "\n".join(cost[6])


def test_a_ladder_list_page_costs_the_same_statements_however_many_rows_it_has(
    ladder: Server, name: str
) -> None:
    """Under ``requires``, each waiting row's soak needs the holder of the alias it waits on:
    read for the whole page in one query, not one per row."""
    models = [f"{name}-{i}" for i in range(4)]
    for model in models:
        version, digest = to_staging(ladder, model)
        res = ladder.request(model, version, digest)
        assert res.status_code == 201 and res.json()["soak"] is not None, res.json()
    params = {"target": "production", "state": "pending"}
    ladder.client.get("/v1/promotions", params={**params, "limit": 1})  # warm
    cost = {}
    for limit in (1, 4):
        with _watching(ladder) as seen:
            page = ladder.client.get("/v1/promotions", params={**params, "limit": limit}).json()
        assert [p["model"] for p in page["items"]] == models[::-1][:limit]
        assert all(p["soak"]["held"] == "staging" for p in page["items"]), page
        cost[limit] = seen

    assert len(cost[4]) == len(cost[1]), "\n".join(cost[4])


def test_audit_verify_names_a_payload_that_is_not_json(server: Server) -> None:
    with server.ctx.db.session() as s:
        row = audit.append(s, actor="ann", action="approval", payload={"a": 1}, at=server.ctx.now())
        audit.append(s, actor="ann", action="approval", payload={"b": 2}, at=server.ctx.now())
        bad = row.id
    with server.ctx.db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET payload = '{\"a\": ' WHERE id = :i"), {"i": bad})
    with server.ctx.db.read_sessions() as s:
        result = audit.verify(s)
    assert result == {
        "ok": False,
        "count": result["count"],
        "first_bad_id": bad,
        "reason": "payload is not valid JSON",
    }


def test_audit_verify_accepts_a_payload_stored_in_another_spelling(server: Server) -> None:
    """The hash is over the canonical event: the same JSON spelled otherwise still checks."""
    with server.ctx.db.session() as s:
        row = audit.append(
            s, actor="ann", action="approval", payload={"a": 1, "b": [2]}, at=server.ctx.now()
        )
    with server.ctx.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET payload = :p WHERE id = :i"),
            {"p": '{ "b": [2], "a": 1 }', "i": row.id},
        )
    with server.ctx.db.read_sessions() as s:
        assert audit.verify(s)["ok"] is True


def test_alias_reads_survive_a_dropped_database_connection(server: Server, name: str) -> None:
    """The hot read keeps one connection per thread; one the database dropped is replaced."""
    if server.ctx.db.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite reads a local file")
    version = _promote(server, name)
    reader = server.client.app.state.alias_reader
    assert reader.current(name, "production")["version"] == version
    pid = reader._local.pg.info.backend_pid
    with server.ctx.db.engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    assert reader.current(name, "production")["version"] == version
    assert reader._local.pg.info.backend_pid != pid
    res = server.client.get(f"/v1/aliases/{name}/production")
    assert res.status_code == 200 and res.json()["version"] == version


def test_a_page_read_opens_no_transaction_on_postgresql(server: Server, name: str) -> None:
    """A page of requests is one statement: on PostgreSQL it runs in autocommit, without a
    transaction's BEGIN and ROLLBACK round trips; reads that stream (the audit chain, through
    a server-side cursor) keep their transaction."""
    if server.ctx.db.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite reads a local file")
    from psycopg.pq import TransactionStatus

    from registry_server.services.request_reads import read_page

    version = server.model.register(name)
    assert server.request(name, version, server.model.record(name, version)).status_code == 201
    with server.ctx.db.statement_reads() as s:
        rows, _, _ = read_page(s, limit=5, model=name)
        status = s.connection().connection.dbapi_connection.info.transaction_status
    assert [r.model for r in rows] == [name] and status == TransactionStatus.IDLE
    with server.ctx.db.read_sessions() as s:
        s.execute(text("SELECT 1"))
        status = s.connection().connection.dbapi_connection.info.transaction_status
    assert status == TransactionStatus.INTRANS
    page = server.client.get("/v1/promotions", params={"model": name}).json()
    assert [p["version"] for p in page["items"]] == [version]
    assert server.client.get("/v1/audit/verify", headers=server.h("root")).json()["ok"] is True


def test_an_mlflow_server_is_swept_from_its_json_as_from_its_client(
    mlflow_server: Any, name: str
) -> None:
    """Over HTTP the sweep reads MLflow's JSON directly (no entity built per model): the
    same models, aliases, creation and update times, and holder identities as MLflow's
    client reads."""
    from registry_server.mlflow_gateway import MlflowGateway
    from tests.server.conftest import log_model

    model = log_model(mlflow_server.url)
    names = [f"{name}-{i}" for i in range(3)]
    client = model.client()
    for i, each in enumerate(names):
        for _ in range(i + 1):
            version = model.register(each)
        model.record(each, version)
        client.set_registered_model_alias(each, "production", str(version))
    client.set_registered_model_alias(names[2], "staging", "1")

    rest, plain = MlflowGateway(mlflow_server.url), MlflowGateway(mlflow_server.url)
    plain._rest_creds = lambda: None  # type: ignore[method-assign]
    assert rest._rest_creds() is not None

    def ours(gateway: MlflowGateway) -> list[Any]:
        pages = list(gateway.alias_pages(page_size=2))
        assert all(len(page) <= 2 for page in pages)
        return sorted((m for page in pages for m in page if m.name in names), key=str)

    swept = ours(rest)
    assert swept == ours(plain) and [m.name for m in swept] == names
    assert [m.aliases for m in swept] == [
        {"production": 1},
        {"production": 2},
        {"production": 3, "staging": 1},
    ]
    assert all(isinstance(m.created_ms, int) and isinstance(m.updated_ms, int) for m in swept)
    wanted = [(m.name, m.aliases["production"], m.created_ms) for m in swept]
    found = rest.identities(wanted)
    assert found == plain.identities(wanted) and len(found) == 3
    assert all(i.evidence_digest and i.run_id == model.run_id for i in found.values())
