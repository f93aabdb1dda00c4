"""Graceful drain and restart in each BentoML worker.

uvicorn, on SIGTERM, closes its listener and every idle keep-alive connection at once: a client that
sends on such a connection at that moment gets no answer, and an idle TLS connection can hold the
shutdown up indefinitely. :func:`install_drain` replaces uvicorn's signal handler in the worker; the
first SIGTERM (or SIGINT) starts :meth:`Drain.run` instead, within a budget of ``SERVING_DRAIN_S``:

1. readiness answers 503 at once (:attr:`DataPlane.draining`), and every HTTP response carries
   ``Connection: close`` from then on;
2. both gRPC servers stop with the whole budget as grace (new calls refused, calls in progress finish);
   the HTTP listener stops: its accept queue shrinks to nothing, what the kernel had queued is accepted
   and served, then it closes, so new connections are refused;
3. every open connection gets its request in progress, or its next one, answered (with ``Connection:
   close``, so it then closes); connections still idle ``IDLE_GRACE_S`` after the signal are closed;
4. once no connection is left (or the budget is spent) uvicorn's own shutdown runs, bounded by what is
   left of the budget, and the worker exits.

In Kubernetes the ``preStop`` sleep keeps the pod serving while it leaves the Service's endpoints; the
SIGTERM that follows finds few connections left (see ``deploy/k8s``).

Further SIGTERMs are ignored (``bentoml serve`` passes its own on to workers that may have had one
already); a second SIGINT (Ctrl-C) stops at once. :func:`first_start` tells a worker whether it is a
restart after a crash: a restarted worker loads its models before it listens, so new connections keep
going to the workers that are ready while it loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

from service.dataplane import DataPlane

log = logging.getLogger("service.drain")
IDLE_GRACE_S = 1.0
"""How long a keep-alive connection idle since the signal may still send a request (then it is closed)."""


def _busy(connection: Any) -> bool:
    """Whether a uvicorn connection has a request in progress (idle keep-alive ones do not)."""
    cycle = getattr(connection, "cycle", None)
    return cycle is not None and not cycle.response_complete


class Drain:
    """The drain of one worker; :meth:`attach` gives it the data plane and the gRPC stop."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.dataplane: DataPlane | None = None
        self.stop_grpc: Callable[[float], Awaitable[None]] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started = False

    def attach(self, dataplane: DataPlane, stop_grpc: Callable[[float], Awaitable[None]]) -> None:
        self.dataplane, self.stop_grpc = dataplane, stop_grpc
        self.loop = asyncio.get_running_loop()

    def begin(self, server: Any) -> bool:
        """Start draining ``server`` (a ``uvicorn.Server``); ``False`` when it cannot (not attached)."""
        if self.started or self.loop is None or self.dataplane is None or self.budget_s <= 0:
            return False
        self.started = True
        self.dataplane.draining = True
        loop = self.loop
        loop.call_soon_threadsafe(lambda: loop.create_task(self.run(server)))
        return True

    async def run(self, server: Any) -> None:
        assert self.dataplane is not None and self.loop is not None
        loop = self.loop
        started = loop.time()
        end = started + self.budget_s
        log.info("worker %s draining: up to %.1f s", os.getpid(), self.budget_s)
        connections = server.server_state.connections
        stopping: asyncio.Future[None] | None = None
        try:
            if self.stop_grpc is not None:
                stopping = asyncio.ensure_future(self.stop_grpc(self.budget_s))
            await _stop_listening(server.servers)
            idle_until = started + min(IDLE_GRACE_S, self.budget_s / 2)
            while connections and loop.time() < end:
                if loop.time() >= idle_until:
                    for connection in list(connections):
                        if not _busy(connection):  # idle since the signal: nothing received to answer
                            connection.transport.close()
                await asyncio.sleep(0.02)
            if stopping is not None:
                await asyncio.wait_for(stopping, max(0.1, end - loop.time()))
        except Exception:  # a failed drain must still let the worker stop
            log.exception("drain failed; stopping now")
        server.config.timeout_graceful_shutdown = max(0.1, end - loop.time())
        server.should_exit = True
        log.info("worker %s drained in %.2f s; stopping", os.getpid(), loop.time() - started)


async def _stop_listening(listeners: list[Any]) -> None:
    """Close the listeners without resetting connections the kernel has queued: first shrink the accept
    queue to nothing (new connection attempts wait, then meet a closed port), let the event loop accept
    what is queued, then close at a moment the queue is seen empty (closing a listener resets what its
    queue holds, and those clients would never get an answer)."""
    sockets = [sock for listener in listeners for sock in listener.sockets]
    for sock in sockets:
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(sock.fileno())) as same:
            same.listen(0)
    await asyncio.sleep(0.05)
    for _ in range(100):  # at most about 0.5 s more
        if not any(_queued(sock) for sock in sockets):
            break
        await asyncio.sleep(0.005)
    for listener in listeners:  # no await between the check and the close
        listener.close()


def _queued(sock: Any) -> int:
    """Connections waiting in a listening socket's accept queue (Linux: ``tcpi_unacked`` of a listener)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except (OSError, AttributeError):
        return 0
    return int.from_bytes(info[24:28], sys.byteorder)


def install_drain(drain: Drain) -> None:
    """Route uvicorn's first SIGTERM/SIGINT in this process to ``drain`` (idempotent)."""
    import uvicorn

    cls: Any = uvicorn.Server
    if getattr(cls.handle_exit, "_drain", None) is not None:
        return
    original = cls.handle_exit

    def handle_exit(self: Any, sig: int, frame: FrameType | None) -> None:
        if drain.started and sig == signal.SIGTERM:
            return  # `bentoml serve` passes its SIGTERM on to workers that may have had one already
        if sig in (signal.SIGTERM, signal.SIGINT) and drain.begin(self):
            self._captured_signals.append(sig)  # re-raised after shutdown, as uvicorn does
            return
        original(self, sig, frame)  # a second Ctrl-C: stop now

    handle_exit._drain = drain  # type: ignore[attr-defined]
    cls.handle_exit = handle_exit


def first_start(workers: int) -> bool:
    """``True`` the first time a BentoML worker starts under its ``bentoml serve`` process, ``False`` when
    it is a restart after a crash; ``True`` outside BentoML's workers.

    A restart is a worker whose ``--worker-id`` started before, or any worker that finds ``workers``
    others already started: circus gives a replacement the lowest free id, which is the dead one's only
    once that one is reaped, so under load a replacement can come with a new id."""
    if "--worker-id" not in sys.argv:
        return True
    worker = sys.argv[sys.argv.index("--worker-id") + 1]
    folder = Path(tempfile.gettempdir()) / f"keras-serving-{os.getppid()}"
    marker = folder / f"worker-{worker}"
    if marker.exists():
        return False
    folder.mkdir(parents=True, exist_ok=True)
    started = sum(1 for _ in folder.glob("worker-*"))
    marker.touch()
    return started < workers
