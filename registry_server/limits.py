"""Guards in front of the whole app: a body-size limit (413) and no NUL in path or query.

Bodies announced larger than ``max_bytes`` (``Content-Length``) are refused before they are
read; chunked bodies are read up to the limit and refused as soon as they pass it. A NUL
character in the path or the query string is refused with 422 (PostgreSQL text cannot
hold it, and no name of ours contains one). Both answers use our error body.

Example:
    >>> app.add_middleware(BodySizeLimit, max_bytes=1024 * 1024)  # doctest: +SKIP
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimit"]


class BodySizeLimit:
    """ASGI middleware refusing request bodies larger than ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await _answer(send, 422, _nul_body())
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await self._refuse(send, declared.decode("latin-1"))
                return
            await self.app(scope, receive, send)
            return
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send, f"more than {size}")
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await self.app(scope, _replay(messages, receive), send)

    async def _refuse(self, send: Send, size: str) -> None:
        body = {
            "code": "payload_too_large",
            "message": f"The request body ({size} bytes) is larger than the limit "
            f"of {self.max_bytes} bytes.",
            "hint": "Send a smaller body; the limit is the server setting max_body_bytes.",
        }
        await _answer(send, 413, body)


def _nul_body() -> dict[str, str]:
    return {
        "code": "invalid_request",
        "message": "The request path or query contains a NUL character (%00).",
        "hint": "Remove the NUL character; names and filters never contain one.",
    }


async def _answer(send: Send, status: int, payload: dict[str, str]) -> None:
    body = orjson.dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
