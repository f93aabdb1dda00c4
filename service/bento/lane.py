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


class Deadlines:
    """The request timeout of every request on the lane, kept by one timer instead of one per request
    (``asyncio.timeout`` arms and cancels a loop timer for each: ~10 µs a request against ~1 µs here).

    Every request has the same timeout, so the order they were added in is the order they expire in:
    the timer fires at the oldest one's deadline, cancels the tasks whose deadline has passed (as
    ``asyncio.timeout`` does; :meth:`expired` then tells their handler it was us) and is armed again
    for the oldest request still waiting, if any.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._waiting: dict[asyncio.Task[Any], float] = {}  # task -> deadline (loop time), oldest first
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, task: asyncio.Task[Any]) -> None:
        """``task`` is cancelled unless :meth:`discard` comes within the timeout."""
        loop = task.get_loop()
        deadline = loop.time() + self.timeout_s
        self._waiting[task] = deadline
        if self._timer is None or self._loop is not loop:  # none armed, or armed on a loop now gone
            self._loop = loop
            self._timer = loop.call_at(deadline, self._fire)

    def discard(self, task: asyncio.Task[Any]) -> None:
        """``task`` has answered (or ended): it is not cancelled any more (a cancellation of ours that
        its handler never saw is taken back)."""
        self._waiting.pop(task, None)
        if task in self._expired:
            self.expired(task)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` was cancelled for its deadline (the cancellation is then taken back)."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    def _fire(self) -> None:
        self._timer = None
        assert self._loop is not None
        now = self._loop.time()
        waiting = self._waiting
        while waiting:
            task, deadline = next(iter(waiting.items()))
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._fire)
                return
            del waiting[task]
            if not task.done():
                self._expired.add(task)
                task.cancel()


class FastLane:
    """ASGI app: our paths to ``ours`` (with a timeout), the rest to ``bento``."""

    def __init__(self, bento: ASGIApp, ours: ASGIApp, timeout_s: float) -> None:
        self.bento = bento
        self.ours = ours
        self.deadlines = Deadlines(timeout_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_ours(scope["path"]):
            await self.bento(scope, receive, send)
            return
        started_at = perf_counter()
        task = asyncio.current_task()
        assert task is not None
        deadlines = self.deadlines
        deadlines.add(task)
        started = False
        status = 500

        async def send_started(message: Message) -> None:
            nonlocal started, status
            if not started:
                started = True
                status = message["status"]
                deadlines.discard(task)  # the answer is on its way: no 504 after this
            await send(message)

        try:
            await self.ours(scope, receive, send_started)
        except asyncio.CancelledError:
            if started or not deadlines.expired(task):  # answered already, or not our cancellation
                raise
            answer = error_response(
                TimedOut(f"the request was not answered within {deadlines.timeout_s:g} s")
            )
            status = answer.status_code
            await answer(scope, receive, send)
        finally:
            if not started:  # an answer that started was discarded then; this one ended without one
                deadlines.discard(task)
            self._observe(scope, status, perf_counter() - started_at)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        """Count the answer (BentoML's request metrics no longer see these routes)."""
        api = api_of(scope["path"])
        method = scope["method"] if scope["method"] in METHODS else "OTHER"  # bounded label values
        metrics = get_metrics()
        metrics.bound(metrics.http_requests, api, method, str(status)).inc()
        metrics.bound(metrics.http_latency, api).observe(seconds)
