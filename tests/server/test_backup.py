"""Back up, write more, restore: the later writes are gone and the audit chain verifies."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from registry_server.backup import BackupError, backup, main, restore
from tests.server.conftest import Server
from tests.server.test_recovery import _request


def _count(server: Server) -> int:
    with server.ctx.db.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM audit_events")).scalar()


def test_backup_write_more_restore_verifies(server: Server, name: str, tmp_path: Path) -> None:
    rid, version = _request(server, name)
    server.approve(rid, "ann")
    server.approve(rid, "bob")
    kept = _count(server)
    dump = backup(server.ctx.db.url, tmp_path / "registry.bak")
    assert dump.stat().st_size > 0

    later, _ = _request(server, name)
    server.approve(later, "ann")
    assert _count(server) > kept

    server.ctx.db.dispose()
    verdict = restore(server.ctx.db.url, dump)
    assert verdict == {"ok": True, "count": kept, "first_bad_id": None, "reason": None}
    assert server.client.get(f"/v1/promotions/{later}").status_code == 404
    assert server.client.get(f"/v1/promotions/{rid}").json()["state"] == "promoted"
    holder = server.client.get(f"/v1/aliases/{name}/production").json()
    assert holder["version"] == version
    assert server.client.get("/v1/audit/verify", headers=server.h("root")).json()["ok"] is True
    # the server keeps working on the restored database, the chain continues
    again, _ = _request(server, name)
    server.approve(again, "ann")
    assert server.client.get("/v1/audit/verify", headers=server.h("root")).json()["ok"] is True


def test_restore_refuses_a_tampered_backup(server: Server, name: str, tmp_path: Path) -> None:
    rid, _ = _request(server, name)
    server.approve(rid, "ann")
    with server.ctx.db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE id = 2"))
    dump = backup(server.ctx.db.url, tmp_path / "tampered.bak")
    server.ctx.db.dispose()
    with pytest.raises(BackupError, match="broken at event 2: hash does not match"):
        restore(server.ctx.db.url, dump)


def test_module_entry_point_and_errors(server: Server, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    url = server.ctx.db.url
    assert main(["backup", str(tmp_path / "cli.bak"), "--database-url", url]) == 0
    assert "cli.bak" in capsys.readouterr().out
    server.ctx.db.dispose()
    assert main(["restore", str(tmp_path / "cli.bak"), "--database-url", url]) == 0
    assert '"ok": true' in capsys.readouterr().out
    with pytest.raises(BackupError, match=r"No backup file at .*missing\.bak"):
        restore(url, tmp_path / "missing.bak")
