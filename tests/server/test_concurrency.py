"""32 approvals of one request at once, quorum 2: one MLflow alias write, one journal row,
one ``promoted`` event; and the background reconciler racing a promotion undoes nothing."""

from __future__ import annotations

import threading
from collections import Counter

from mlops.errors import ConflictError
from registry_server.app import reconcile_once
from registry_server.services import promotions
from registry_server.services.context import Caller
from tests.server.conftest import FlakyGateway, Server
from tests.server.test_recovery import _promoted_events, _request

APPROVERS = 32


class CountingGateway(FlakyGateway):
    """The real gateway, counting the alias writes that reach MLflow."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.writes: Counter[tuple[str, str, int]] = Counter()
        self._lock = threading.Lock()

    def set_alias(self, name: str, alias: str, version: int) -> None:
        super().set_alias(name, alias, version)
        with self._lock:
            self.writes[(name, alias, version)] += 1


def _counting(server: Server) -> CountingGateway:
    gateway = CountingGateway(server.model.tracking_uri)
    server.ctx.gateway = gateway
    return gateway


def _race(server: Server, rid: int, users: list[str]) -> list[object]:
    results: list[object] = []
    barrier = threading.Barrier(len(users))

    def approve(user: str) -> None:
        barrier.wait()
        try:
            results.append(promotions.approve(server.ctx, Caller(user, ("approver",)), rid))
        except ConflictError as exc:
            results.append(exc)

    threads = [threading.Thread(target=approve, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_32_concurrent_approvals_move_the_alias_once(server: Server, name: str) -> None:
    gateway = _counting(server)
    rid, version = _request(server, name)  # production: quorum 2
    results = _race(server, rid, [f"approver{i:02d}" for i in range(APPROVERS)])

    assert len(results) == APPROVERS
    states = sorted(r["state"] for r in results if isinstance(r, dict))
    conflicts = [r for r in results if isinstance(r, ConflictError)]
    assert states == ["pending", "promoted"], states
    assert len(conflicts) == APPROVERS - 2
    assert all("not pending" in str(c) for c in conflicts)
    assert gateway.writes == Counter({(name, "production", version): 1})
    history = server.client.get(f"/v1/aliases/{name}/production/history").json()["items"]
    assert [(h["version"], h["to"], h["action"]) for h in history] == [(version, None, "promote")]
    assert len(_promoted_events(server, name)) == 1
    assert reconcile_once(server.ctx) == {
        "applied": 0,
        "attested": 0,
        "expired": 0,
        "restored": 0,
        "soaked": 0,
    }
    assert gateway.writes.total() == 1
    verify = server.client.get("/v1/audit/verify", headers=server.h("root")).json()
    assert verify["ok"] is True


def test_reconciler_racing_a_promotion_restores_nothing(server: Server, name: str) -> None:
    """A reconcile pass running while the next version is promoted must not see drift."""
    rid, first = _request(server, name)
    server.approve(rid, "ann")
    server.approve(rid, "bob")
    gateway = _counting(server)
    rid2, second = _request(server, name)
    server.approve(rid2, "ann")

    stop = threading.Event()
    restored: list[int] = []

    def reconcile() -> None:
        while not stop.is_set():
            restored.append(reconcile_once(server.ctx)["restored"])

    thread = threading.Thread(target=reconcile)
    thread.start()
    try:
        assert server.approve(rid2, "bob").json()["state"] == "promoted"
    finally:
        stop.set()
        thread.join(timeout=60)
    assert sum(restored) == 0
    assert gateway.writes == Counter({(name, "production", second): 1})
    mv = server.model.client().get_model_version_by_alias(name, "production")
    assert int(mv.version) == second != first
