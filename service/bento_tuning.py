"""Fixes and tuning for BentoML 1.4 under load (measured causes in ENVIRONMENT.md / README).

* BentoML's ``TimeoutMiddleware`` schedules a timer per request and never cancels it, which keeps each
  request's objects (tracing spans included) alive for ``traffic.timeout`` seconds and makes garbage
  collection slower and slower. :func:`patch_timeout_middleware` cancels the timer when the response
  starts; behaviour (504 after the timeout) is unchanged.
* BentoML's workers share one listening socket, so a burst of new connections often lands entirely on
  whichever worker wakes first (16 connections on one of two workers halves throughput).
  :func:`listen_per_worker` and :func:`take_own_listener` give each worker a listening socket of its own
  with ``SO_REUSEPORT``; the kernel then spreads new connections over the workers.
* After the models are loaded, :func:`freeze_heap` moves the start-up objects out of the collector's
  view and raises the generation-0 threshold, so JSON-heavy requests stop triggering full collections.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
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


API_SOCKET = "_bento_api_server"  # the name BentoML gives its HTTP listening socket in circus
WORKER_MODULE = "_bentoml_impl.worker.service"


def _refuse_busy_port(host: str, port: int, family: int) -> None:
    """Fail like a plain bind would if something already listens on the port (SO_REUSEPORT would not)."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None


def listen_per_worker() -> None:
    """``bentoml serve`` side: bind BentoML's HTTP socket with ``SO_REUSEPORT`` but do not listen on it.

    The bound socket keeps the port and is still handed to every worker; each worker then listens on a
    socket of its own (:func:`take_own_listener`), so the kernel spreads new connections over the
    workers. Runs when the service module is imported, which the CLI does before creating its sockets.
    """
    from circus.sockets import CircusSocket

    cls: Any = CircusSocket
    if getattr(cls, "_per_worker", False) or not hasattr(socket, "SO_REUSEPORT"):
        return
    original_init, original_bind = cls.__init__, cls.bind_and_listen

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.bind_only = self.name == API_SOCKET and not self.is_unix and self.port != 0
        if self.bind_only:
            _refuse_busy_port(self.host, self.port, self.family)
            self.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)

    def bind_and_listen(self: Any) -> None:
        if not getattr(self, "bind_only", False):
            return original_bind(self)
        self.bind((self.host, self.port))
        self.setblocking(False)
        return None

    cls.__init__, cls.bind_and_listen, cls._per_worker = __init__, bind_and_listen, True


def take_own_listener() -> bool:
    """Worker side: replace the inherited bound-only HTTP socket with a listening one of our own.

    The worker serves whatever file descriptor ``--fd`` names; :func:`os.dup2` swaps our socket in
    under that number before uvicorn starts. Does nothing outside a BentoML worker or when the
    inherited socket already listens (``SERVING_REUSE_PORT=false``: BentoML's one shared socket).
    """
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if getattr(spec, "name", None) != WORKER_MODULE or "--fd" not in sys.argv:
        return False
    fd = int(sys.argv[sys.argv.index("--fd") + 1])
    backlog = int(sys.argv[sys.argv.index("--backlog") + 1]) if "--backlog" in sys.argv else 2048
    with socket.socket(fileno=os.dup(fd)) as inherited:
        if inherited.type != socket.SOCK_STREAM or inherited.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            return False
        if not inherited.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
            return False
        with socket.socket(inherited.family, socket.SOCK_STREAM) as own:
            own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            own.bind(inherited.getsockname())
            own.listen(backlog)
            own.setblocking(False)
            os.dup2(own.fileno(), fd)
    return True


def freeze_heap(gen0_threshold: int = 50_000) -> None:
    """Collect once, freeze what survived start-up, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
