"""Fixes and tuning for BentoML 1.4 under load (measured causes in ENVIRONMENT.md / README).

* BentoML's ``TimeoutMiddleware`` schedules a timer per request and never cancels it, which keeps each
  request's objects (tracing spans included) alive for ``traffic.timeout`` seconds and makes garbage
  collection slower and slower. :func:`patch_timeout_middleware` cancels the timer when the response
  starts; behaviour (504 after the timeout) is unchanged.
* After the models are loaded, :func:`freeze_heap` moves the start-up objects out of the collector's
  view and raises the generation-0 threshold, so JSON-heavy requests stop triggering full collections.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from starlette.responses import JSONResponse


def patch_timeout_middleware() -> None:
    """Replace ``TimeoutMiddleware.__call__`` with one that cancels its timer (idempotent)."""
    from bentoml._internal.server.http import traffic

    cls: Any = traffic.TimeoutMiddleware
    if getattr(cls, "_timer_cancelled", False):
        return

    async def __call__(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: Any) -> None:
            if not waiter.done():
                waiter.set_result(None)
                timer.cancel()
            await send(message)

        fut = asyncio.ensure_future(self.app(scope, receive, _send))

        def _finished(_: Any) -> None:
            timer.cancel()
            if not waiter.done():
                waiter.set_result(None)

        fut.add_done_callback(_finished)
        try:
            await waiter
        except TimeoutError:
            if fut.cancel():
                message = f"Not able to process the request in {self.timeout} seconds"
                await JSONResponse({"error": message}, status_code=504)(scope, receive, send)
        else:
            await fut

    cls.__call__ = __call__
    cls._timer_cancelled = True


def freeze_heap(gen0_threshold: int = 50_000) -> None:
    """Collect once, freeze what survived start-up, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
