"""Every patch of BentoML 1.4 and uvicorn internals, each checked against what is installed.

The causes were measured under load (README, "Serving under load"); ``bentoml`` is pinned ``<1.5``.
Each patch first checks that the BentoML it meets still has what the patch replaces
(:func:`check_bentoml`); one that cannot apply is skipped with a warning in the log that names it and
what it costs, and ``serving_bentoml_patch_active{patch}`` shows 0 for it. Nothing is half-applied:
the per-worker listener is applied only when both its sides (serve process and worker) can be.

* BentoML's ``TimeoutMiddleware`` schedules a timer per request and never cancels it, which keeps each
  request's objects (tracing spans included) alive for ``traffic.timeout`` seconds and makes garbage
  collection slower and slower. :func:`patch_timeout_middleware` cancels the timer when the response
  starts; behaviour (504 after the timeout) is unchanged.
* BentoML's workers share one listening socket, so a burst of new connections often lands entirely on
  whichever worker wakes first (16 connections on one of two workers halves throughput).
  :func:`listen_per_worker` and :func:`take_own_listener` give each worker a listening socket of its own
  with ``SO_REUSEPORT``; the kernel then spreads new connections over the workers.
* uvloop (libuv) accepts one new connection per event-loop iteration, so under load a burst of new
  connections waits seconds in the accept queue. :func:`service.bento.accept.patch_accept` makes
  uvicorn accept in batches, as asyncio's listener does.
* After the models are loaded, :func:`freeze_heap` moves the start-up objects out of the collector's
  view and raises the generation-0 threshold, so JSON-heavy requests stop triggering full collections.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import logging
import os
import socket
import sys
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from starlette.responses import JSONResponse

log = logging.getLogger("service.bento")

API_SOCKET = "_bento_api_server"  # the name BentoML gives its HTTP listening socket in circus
WORKER_MODULE = "_bentoml_impl.worker.service"
ASGIApp = Callable[..., Any]

PATCHES = (
    "timeout_middleware",
    "listen_per_worker",
    "fast_lane",
    "batch_accept",
    "skip_answered_body",
    "direct_body",
)
"""The patches by name (the ``patch`` label of ``serving_bentoml_patch_active``)."""
ACTIVE: dict[str, bool] = dict.fromkeys(PATCHES, False)
"""Which patches this process applied."""
COST = {
    "timeout_middleware": "a per-request timer keeps each request alive for the traffic timeout; "
    "garbage collection slows down under load",
    "listen_per_worker": "the workers share one socket: a burst of connections can land on one worker "
    "and halve throughput",
    "fast_lane": "every request goes through BentoML's middleware (about 15 % more CPU per request)",
    "batch_accept": "a busy worker accepts one new connection per event-loop iteration: under load a "
    "new connection's first request can wait seconds",
    "skip_answered_body": "the body of a request refused before it was read still goes through the "
    "HTTP parser piece by piece (under overload most of the bytes a worker receives)",
    "direct_body": "a large request body is copied piece by piece through the HTTP parser and joined "
    "again (about 2.5x the CPU of reading it into one buffer for a 3.2 MB body)",
}


def _attribute(path: str) -> Any:
    """``module.attr.attr`` resolved, or ``None`` when any part is missing."""
    module_name, _, attrs = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError:
        return None
    for attr in attrs.split("."):
        obj = getattr(obj, attr, None)
        if obj is None:
            return None
    return obj


REQUIRES = {
    "timeout_middleware": [
        "bentoml._internal.server.http.traffic:TimeoutMiddleware.__call__",
        "bentoml._internal.server.http.traffic:TimeoutMiddleware._set_timer_out",
    ],
    "listen_per_worker": [
        "circus.sockets:CircusSocket.bind_and_listen",
        "_bentoml_impl.server.serving:API_SERVER_NAME",
    ],
    "fast_lane": ["_bentoml_sdk.service.factory:Service.to_asgi"],
    "batch_accept": [
        "uvicorn.server:Server.startup",
        "uvicorn.config:Config.load",
        "_bentoml_impl.worker.service:main",
    ],
    "skip_answered_body": [
        f"uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.{name}"
        for name in (
            "on_body",
            "on_response_complete",
            "_unset_keepalive_if_required",
            "timeout_keep_alive_handler",
        )
    ],
    "direct_body": [
        *(
            f"uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.{name}"
            for name in ("on_headers_complete", "on_response_complete", "_unset_keepalive_if_required")
        ),
        "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.receive",
    ],
}
"""What each patch replaces or relies on, as ``module:attribute`` paths."""


def check_bentoml(patch: str) -> str | None:
    """Why ``patch`` cannot apply to the installed BentoML, or ``None`` when it can."""
    missing = [path for path in REQUIRES[patch] if _attribute(path) is None]
    if patch == "listen_per_worker":
        if not hasattr(socket, "SO_REUSEPORT"):
            missing.append("socket.SO_REUSEPORT")
        if _attribute("_bentoml_impl.server.serving:API_SERVER_NAME") not in (None, API_SOCKET):
            missing.append(f"the API socket named {API_SOCKET!r}")
        if importlib.util.find_spec(WORKER_MODULE) is None:
            missing.append(WORKER_MODULE)
    if not missing:
        return None
    return f"BentoML {version('bentoml')} with uvicorn {version('uvicorn')} has no {', '.join(missing)}"


def applicable(patch: str) -> bool:
    """Check ``patch``; log why it is skipped and what that costs when it cannot apply."""
    problem = check_bentoml(patch)
    if problem is not None:
        log.warning("BentoML patch %s not applied: %s; effect: %s", patch, problem, COST[patch])
    return problem is None


def report_patches(gauge: Any) -> None:
    """Set ``serving_bentoml_patch_active{patch}`` (1 applied, 0 not) for every patch."""
    for patch in PATCHES:
        gauge.labels(patch).set(1 if ACTIVE[patch] else 0)


def patch_timeout_middleware() -> None:
    """Replace ``TimeoutMiddleware.__call__`` with one that cancels its timer (idempotent)."""
    if ACTIVE["timeout_middleware"] or not applicable("timeout_middleware"):
        return
    from bentoml._internal.server.http import traffic

    cls: Any = traffic.TimeoutMiddleware

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
    ACTIVE["timeout_middleware"] = True


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
    if ACTIVE["listen_per_worker"] or not applicable("listen_per_worker"):
        return
    from circus.sockets import CircusSocket

    cls: Any = CircusSocket
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

    cls.__init__, cls.bind_and_listen = __init__, bind_and_listen
    ACTIVE["listen_per_worker"] = True


def take_own_listener() -> bool:
    """Worker side: replace the inherited bound-only HTTP socket with a listening one of our own.

    The worker serves whatever file descriptor ``--fd`` names; :func:`os.dup2` swaps our socket in
    under that number before uvicorn starts. The socket is bound here and listens only when uvicorn
    starts serving it, after the lifespan startup: a restarted worker, which loads its models during
    startup, gets no connection before it can answer. Does nothing outside a BentoML worker or when
    the inherited socket already listens (``SERVING_REUSE_PORT=false``: BentoML's one shared socket).
    """
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if getattr(spec, "name", None) != WORKER_MODULE or "--fd" not in sys.argv:
        return False
    ACTIVE["listen_per_worker"] = False  # in a worker, what counts is whether it got its own listener
    fd = int(sys.argv[sys.argv.index("--fd") + 1])
    with socket.socket(fileno=os.dup(fd)) as inherited:
        if inherited.type != socket.SOCK_STREAM:
            return False
        if inherited.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) or not inherited.getsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEPORT
        ):
            log.warning(
                "worker %s serves BentoML's one shared HTTP socket (not a listener of its own): "
                "connections may pile up on one worker",
                os.getpid(),
            )
            return False
        with socket.socket(inherited.family, socket.SOCK_STREAM) as own:
            own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            own.bind(inherited.getsockname())
            own.setblocking(False)
            os.dup2(own.fileno(), fd)
    ACTIVE["listen_per_worker"] = True
    return True


def freeze_heap(gen0_threshold: int = 50_000) -> None:
    """Collect once, freeze what survived start-up, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def wrap_service(service: Any, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
    """Make BentoML's workers serve ``wrap(app)`` where they would serve ``service``'s own ASGI app.

    BentoML's worker builds its app with ``service.to_asgi()`` and hands it to uvicorn; the service
    class is a slotted attrs class, so the method is wrapped on the class, for this instance only.
    """
    if ACTIVE["fast_lane"] or not applicable("fast_lane"):
        return
    cls = type(service)
    original = cls.to_asgi

    def to_asgi(self: Any, *args: Any, **kwargs: Any) -> ASGIApp:
        app = original(self, *args, **kwargs)
        return wrap(app) if self is service else app

    cls.to_asgi = to_asgi
    ACTIVE["fast_lane"] = True
