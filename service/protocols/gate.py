"""The HTTP gate: CORS and bearer tokens in front of every route (ours and BentoML's).

An ASGI middleware. The service installs it only when access control or CORS is configured, so a
default server pays nothing; when installed, each request costs a few header look-ups. It sits in
front of our app in the fast lane and inside BentoML's stack (for BentoML's own routes, and for every
route when the fast lane is off), so both paths enforce the same rules.

* **CORS** (``SERVING_CORS_ORIGINS``): a preflight (``OPTIONS`` with ``Origin`` and
  ``Access-Control-Request-Method``) from an allowed origin is answered 204 with the allowed methods and
  headers; from any other origin 403 in the one JSON error shape. Other requests from an allowed origin
  get ``Access-Control-Allow-Origin``; from a refused origin they are answered without it (the browser
  then withholds the answer). Preflights are answered before the token check (browsers send no token).
* **Tokens** (:class:`service.protocols.access.AccessPolicy`): 401 with ``WWW-Authenticate: Bearer ...``
  without a valid token, 403 for a token without the route's scope, through
  :func:`service.protocols.http.error_response`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from service.errors import Forbidden, ServingError
from service.protocols.access import AccessPolicy
from service.protocols.http import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ALLOW_METHODS = b"GET, POST, OPTIONS"
ALLOW_HEADERS = b"Authorization, Content-Type, Inference-Header-Content-Length"
EXPOSE_HEADERS = b"Retry-After, WWW-Authenticate, Inference-Header-Content-Length"
MAX_AGE = b"600"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class Gate:
    """ASGI middleware: CORS for ``cors_origins`` (empty: off) and ``policy``'s tokens (``None``: off)."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy | None, cors_origins: Sequence[str] = ()) -> None:
        self.app = app
        self.policy = policy
        self.origins = frozenset(cors_origins)
        self.any_origin = "*" in self.origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.origins:
            origin = _header(scope, b"origin")
            if origin is not None:
                allowed = self.any_origin or origin in self.origins
                if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
                    await self._preflight(scope, receive, send, origin, allowed)
                    return
                if allowed:
                    send = _with_cors(send, origin)
        if self.policy is not None:
            need = self.policy.http_scope(scope["path"])
            if need is not None:
                try:
                    what = f"{scope['method']} {scope['path']}"
                    self.policy.check(_header(scope, b"authorization"), need, what)
                except ServingError as exc:
                    await error_response(exc)(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _preflight(
        self, scope: Scope, receive: Receive, send: Send, origin: str, allowed: bool
    ) -> None:
        if not allowed:
            refused = Forbidden(f"origin {origin!r} may not call this server (see SERVING_CORS_ORIGINS)")
            await error_response(refused)(scope, receive, send)
            return
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ALLOW_HEADERS),
            (b"access-control-max-age", MAX_AGE),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _with_cors(send: Send, origin: str) -> Send:
    """``send`` that adds the CORS answer headers for an allowed ``origin`` to the response start."""
    extra = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-expose-headers", EXPOSE_HEADERS),
        (b"vary", b"Origin"),
    ]

    async def cors_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return cors_send
