"""The REST app: Starlette's routes and state, with the route of a request found once and called directly.

Starlette resolves every request by trying each route's pattern in turn, then runs the endpoint inside
four layers (its error middleware, exception middleware, the router and the route's request/response
wrapper), each an extra coroutine per request and most an extra ``send`` wrapper. Our endpoints need
none of them: every one is :func:`~service.protocols.http.guarded` (errors already answered in our JSON
shape) and none raises Starlette's ``HTTPException`` or builds URLs from the router.

:class:`RestApp` is Starlette (``routes``, ``state``, test clients as before) whose middleware stack is
shorter: the app's own middleware (:class:`~service.protocols.admission.Admission`), then
:class:`Dispatch`. Dispatch remembers which route a ``(method, path)`` fully matched, so a path is
matched once per worker rather than once per request, and calls that route's endpoint itself. Anything
else (an unknown path, a method the route does not take, a path off by a trailing slash) goes to
Starlette's stack unchanged, so those answers (404s of the catch-alls, 405 with ``Allow``, redirects) stay
what they were.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, get_route_path

from service.errors import InternalError
from service.protocols.encoding import compress_answer
from service.protocols.http import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Endpoint = Callable[[Request], Awaitable[Response]]

log = logging.getLogger("service.http")
REMEMBERED = 1024
"""Matches remembered at most (model names are part of some paths; past this the memory starts over)."""


class Dispatch:
    """ASGI app: a request that fully matches one of ``routes`` goes straight to its endpoint; every
    other request (and every non-HTTP scope) to ``fallback``, Starlette's router behind its middleware."""

    def __init__(self, routes: Sequence[BaseRoute], fallback: ASGIApp, compress_min_bytes: int = 0) -> None:
        self.routes = [r for r in routes if isinstance(r, Route)]
        self.fallback = fallback
        self.compress_min_bytes = compress_min_bytes
        """Answers at least this large are compressed for clients that ask
        (:func:`~service.protocols.encoding.compress_answer`); 0: none."""
        self._known: dict[tuple[str, str], tuple[Route, dict[str, Any]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._match(scope) if scope["type"] == "http" else None
        if found is None:
            await self.fallback(scope, receive, send)
            return
        route, params = found
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {**scope.get("path_params", {}), **params}
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception:  # every endpoint is guarded: this is a bug, answered as Starlette's layers would
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            response = error_response(InternalError())
        least = self.compress_min_bytes
        if least and len(getattr(response, "body", b"")) >= least:  # a streamed answer has no body
            await compress_answer(response, scope["headers"])
        await response(scope, receive, send)

    def _match(self, scope: Scope) -> tuple[Route, dict[str, Any]] | None:
        """The route ``scope`` fully matches and its path parameters, or ``None`` (Starlette decides)."""
        key = (scope["method"], get_route_path(scope))
        found = self._known.get(key)
        if found is not None:
            return found
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                found = (route, child["path_params"])
                break
            if match is Match.PARTIAL:
                return None  # Starlette answers it (a later route may still match fully, or a 405)
        else:
            return None
        if ":path}" not in route.path:  # catch-alls are not remembered: any path matches them
            if len(self._known) >= REMEMBERED:
                self._known.clear()
            self._known[key] = found
        return found


class RestApp(Starlette):
    """Starlette with :class:`Dispatch` in place of its router's layers for the requests it matches;
    ``compress_min_bytes`` is :class:`Dispatch`'s (``SERVING_COMPRESS_MIN_BYTES`` in the service)."""

    def __init__(self, *args: Any, compress_min_bytes: int = 0, **kwargs: Any) -> None:
        self.compress_min_bytes = compress_min_bytes
        super().__init__(*args, **kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        handlers = {k: v for k, v in self.exception_handlers.items() if k not in (500, Exception)}
        app: ASGIApp = Dispatch(
            self.router.routes,
            ServerErrorMiddleware(ExceptionMiddleware(self.router, handlers=handlers, debug=self.debug)),
            self.compress_min_bytes,
        )
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app
