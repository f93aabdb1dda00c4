"""Per-worker admission for the REST APIs, before any body is read, and what HTTP needs for drain.

:class:`Admission` is the app's outermost middleware. Each inference request (``POST``) enters the data
plane's in-flight count (:meth:`~service.dataplane.DataPlane.enter`); at the cap it is answered 503 with
``Retry-After`` at once, its body never read. While the worker drains (after SIGTERM) every response
carries ``Connection: close``, so keep-alive clients move to another server instead of having their
connection closed under a request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service.errors import ServingError
from service.protocols.http import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLOSE = (b"connection", b"close")


class Admission:
    """ASGI middleware: the in-flight cap for inference requests and ``Connection: close`` while draining."""

    def __init__(self, app: ASGIApp, protocol_of: Callable[[str], str]) -> None:
        self.app = app
        self.protocol_of = protocol_of
        """The ``protocol`` label of a path (for the rejection metrics)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        dataplane = scope["app"].state.dataplane if scope["type"] == "http" else None
        if dataplane is None:  # lifespan, or an app without a data plane (static pages only)
            await self.app(scope, receive, send)
            return
        if dataplane.draining:
            send = _closing(send)
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            dataplane.enter(self.protocol_of(scope["path"]))
        except ServingError as exc:
            await error_response(exc)(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            dataplane.leave()


def _closing(send: Send) -> Send:
    async def closing_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), CLOSE]
        await send(message)

    return closing_send
