"""A webhook receiver on loopback (the one fake: it stands for a service off the machine)
and helpers to build a server for webhook tests and to verify what it received."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from registry_server.app import create_app
from registry_server.settings import RegistrySettings


@dataclass
class Receiver:
    """Answers 500 to the first ``fail`` calls, then 200; keeps every call."""

    fail: int
    calls: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    port: int = 0

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            status = 500 if len(self.calls) < self.fail else 200
            self.calls.append({"headers": headers, "body": body, "status": status})
            return status

    def ok(self) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c["status"] == 200]

    def last(self) -> dict:
        with self.lock:
            return self.calls[-1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(fail=2)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = rec.handle(dict(self.headers), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = httpd.server_address[1]
    rec.url = f"http://127.0.0.1:{rec.port}/hook"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield rec
    httpd.shutdown()
    httpd.server_close()


def wait(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def hook_app(database_url: str, policy_file: Path, tracking_uri: str, **settings: Any) -> FastAPI:
    """A server whose dispatcher is run by hand (``dispatch_due``), admin token ``hook-admin``."""
    base: dict[str, Any] = {
        "database_url": database_url,
        "policy_path": policy_file,
        "tracking_uri": tracking_uri,
        "reconcile_interval": 0,
        "webhook_interval": 0,
        "admin_token": "hook-admin",
        "ui": False,
    }
    clock = settings.pop("clock", None)
    return create_app(RegistrySettings(**{**base, **settings}), clock=clock)


ADMIN = {"Authorization": "Bearer hook-admin"}


def verify(secret: str, call: dict) -> Any:
    """What a receiver does: ``standardwebhooks.Webhook(secret).verify(body, headers)``."""
    from standardwebhooks import Webhook

    return Webhook(secret).verify(call["body"], call["headers"])


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
