"""The fast lane: our REST routes go straight to our app instead of through BentoML's middleware.

BentoML wraps every request in its own stack before our mounted app sees it: request metrics
(multiprocess Prometheus writes), OpenTelemetry, the traffic timeout, its request context, then
Starlette's error middleware, router and mount. Measured at 64 clients on the tutorial CNN, those
layers cost about 15 % of a worker's CPU per single-image request, and our app needs none of them:
every route of ours already answers errors in our JSON shape and records ``serving_*`` metrics.

:class:`FastLane` sits in front of BentoML's app. Requests for our paths (the route table's,
:func:`service.protocols.routes.is_ours`) go to our app under a request timeout of their own (504, as BentoML's
would be); everything else (``/metrics``, ``/livez``, ``/readyz``, docs, lifespan) goes to BentoML
unchanged. ``SERVING_FAST_LANE=false`` (or ``SERVING_ACCESS_LOG=true``, which needs BentoML's access
log middleware) sends everything through BentoML's stack again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import Any

from service.errors import TimedOut
from service.metrics import get_metrics
from service.protocols.http import error_response
from service.protocols.routes import ALL_METHODS, api_of, is_ours

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

METHODS = frozenset(ALL_METHODS)


class FastLane:
    """ASGI app: our paths to ``ours`` (with a timeout), the rest to ``bento``."""

    def __init__(self, bento: ASGIApp, ours: ASGIApp, timeout_s: float) -> None:
        self.bento = bento
        self.ours = ours
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_ours(scope["path"]):
            await self.bento(scope, receive, send)
            return
        started_at = perf_counter()
        started = False
        status = 500
        try:
            async with asyncio.timeout(self.timeout_s) as deadline:

                async def send_started(message: Message) -> None:
                    nonlocal started, status
                    if not started:
                        started = True
                        status = message["status"]
                        deadline.reschedule(None)  # the answer is on its way: no 504 after this
                    await send(message)

                await self.ours(scope, receive, send_started)
        except TimeoutError:
            if started or not deadline.expired():  # answered already, or not our deadline
                raise
            answer = error_response(TimedOut(f"the request was not answered within {self.timeout_s:g} s"))
            status = answer.status_code
            await answer(scope, receive, send)
        finally:
            self._observe(scope, status, perf_counter() - started_at)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        """Count the answer (BentoML's request metrics no longer see these routes)."""
        api = api_of(scope["path"])
        method = scope["method"] if scope["method"] in METHODS else "OTHER"  # bounded label values
        metrics = get_metrics()
        metrics.bound(metrics.http_requests, api, method, str(status)).inc()
        metrics.bound(metrics.http_latency, api).observe(seconds)
