"""A request-body size limit in front of the whole app: 413 with our error body.

Bodies announced larger than ``max_bytes`` (``Content-Length``) are refused before they are
read; chunked bodies are read up to the limit and refused as soon as they pass it.

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
        body = orjson.dumps(
            {
                "code": "payload_too_large",
                "message": f"The request body ({size} bytes) is larger than the limit "
                f"of {self.max_bytes} bytes.",
                "hint": "Send a smaller body; the limit is the server setting max_body_bytes.",
            }
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
