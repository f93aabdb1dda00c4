"""Per-worker admission for the REST APIs, before any body is read, and what HTTP needs for drain.

:class:`Admission` is the app's outermost middleware. Each inference request (``POST``) enters the data
plane's in-flight count (:meth:`~service.dataplane.DataPlane.enter`); at the cap it is answered 503 with
``Retry-After`` at once, its body never read. While the worker drains (after SIGTERM) every response
carries ``Connection: close``, so keep-alive clients move to another server instead of having their
connection closed under a request.

It also opens the request's :class:`~service.context.Call` (its ``X-Request-Id``, or a new one, and the
sticky routing key) and puts ``X-Request-Id`` and ``X-Model-Version`` (and ``X-Model-Variant`` when a
traffic split chose the version) on every answer, errors included. With tracing on
(:mod:`service.tracing`) each inference request gets its ``ingress`` span here and ``X-Trace-Id`` back;
with ``log_verbose_level`` 1 or more (:mod:`service.server_log`) every answer gets its request log line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from logging import DEBUG
from time import perf_counter
from typing import Any

from service import context, tracing
from service.errors import ServingError
from service.protocols.http import error_response
from service.server_log import REQUESTS, log_request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLOSE = (b"connection", b"close")


class Admission:
    """ASGI middleware: the in-flight cap for inference requests and ``Connection: close`` while draining."""

    def __init__(self, app: ASGIApp, protocol_of: Callable[[str], str], sticky_header: str = "") -> None:
        self.app = app
        self.protocol_of = protocol_of
        """The ``protocol`` label of a path (for the rejection metrics)."""
        self.sticky = sticky_header
        """The header whose value keeps a client on one traffic variant (empty: none)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        dataplane = scope["app"].state.dataplane if scope["type"] == "http" else None
        if dataplane is None:  # lifespan, or an app without a data plane (static pages only)
            await self.app(scope, receive, send)
            return
        logged_from = perf_counter() if REQUESTS.isEnabledFor(DEBUG) else None  # the request log is on
        try:
            call = context.begin_from(scope["headers"], self.sticky)
        except ServingError as exc:  # a malformed X-Request-Id: 400, echoed nowhere
            await error_response(exc)(scope, receive, send)
            if logged_from is not None:
                _log(scope, str(exc.http_status), logged_from, None, exc.message)
            return
        send = _echoing(send, call, dataplane.draining)
        try:
            if scope["method"] != "POST":
                await self.app(scope, receive, send)
                return
            trace = None if tracing.tracer is None else self._trace(tracing.tracer, call, scope)
            try:
                dataplane.enter(self.protocol_of(scope["path"]))
            except ServingError as exc:
                await error_response(exc)(scope, receive, send)
                if trace is not None:
                    trace.end()
                return
            try:
                await self.app(scope, receive, send)
            finally:
                dataplane.leave()
                if trace is not None:
                    trace.end()
        finally:
            if logged_from is not None:
                _log(scope, "-" if call.status is None else str(call.status), logged_from, call)

    def _trace(self, tracer: tracing.Tracer, call: context.Call, scope: Scope) -> tracing.Trace:
        """The ``ingress`` span of an inference request (tracing on), the client's ``traceparent`` its parent."""
        path = scope["path"]
        carrier = tracing.carrier(scope["headers"])
        return tracer.begin(
            call, self.protocol_of(path), carrier, **{"http.request.method": "POST", "url.path": path}
        )


TRACE_ID = tracing.TRACE_ID_HEADER.encode()


def _log(
    scope: Scope, status: str, since: float, call: context.Call | None, error: str | None = None
) -> None:
    """The request log line of an HTTP answer (``-``: none started, the request was cancelled)."""
    log_request("HTTP", f"{scope['method']} {scope['path']}", status, perf_counter() - since, call, error)


def _echoing(send: Send, call: context.Call, closing: bool) -> Send:
    """``send`` adding the call's request id, the version that answered (and the traffic variant, when a
    split chose it) and, while draining, ``Connection: close``."""

    async def echoing_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            call.status = message["status"]
            extra = [(name.encode(), value.encode()) for name, value in call.echo()]
            if call.trace is not None:
                call.trace.responding(message["status"])
                extra.append((TRACE_ID, call.trace.trace_id.encode()))
            if closing:
                extra.append(CLOSE)
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return echoing_send
