"""Graceful drain and restart in each BentoML worker.

uvicorn, on SIGTERM, closes its listener and every idle keep-alive connection at once: a client that
sends on such a connection at that moment gets no answer, and an idle TLS connection can hold the
shutdown up indefinitely. :func:`install_drain` replaces uvicorn's signal handler in the worker; the
first SIGTERM (or SIGINT) starts :meth:`Drain.run` instead, within a budget of ``SERVING_DRAIN_S``:

1. readiness answers 503 at once (:attr:`DataPlane.draining`), and every HTTP response carries
   ``Connection: close`` from then on;
2. both gRPC servers stop with the whole budget as grace (new calls refused, calls in progress finish);
   the HTTP listener stops: it no longer completes new handshakes (a socket filter drops new SYNs, so
   those clients retry and then meet a closed port), what the kernel had queued is accepted and served,
   then it closes, so new connections are refused;
3. every open connection gets its request in progress, or its next one, answered (with ``Connection:
   close``, so it then closes); connections still idle ``IDLE_GRACE_S`` after the signal are closed,
   where idle means nothing to answer: no request in progress, none whose headers are arriving, no
   unread bytes; a connection still being set up (its TLS handshake) counts as open;
4. once no connection is left (or the budget is spent) uvicorn's own shutdown runs, bounded by what is
   left of the budget, and the worker exits.

In Kubernetes the ``preStop`` sleep keeps the pod serving while it leaves the Service's endpoints; the
SIGTERM that follows finds few connections left (see ``deploy/k8s``).

Further SIGTERMs are ignored (``bentoml serve`` passes its own on to workers that may have had one
already); a second SIGINT (Ctrl-C) stops at once. How a restarted worker comes back is in
:mod:`service.bento.workers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import socket
import struct
import sys
import termios
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from service.dataplane import DataPlane

log = logging.getLogger("service.drain")
IDLE_GRACE_S = 1.0
"""How long a keep-alive connection idle since the signal may still send a request (then it is closed)."""


def _busy(connection: Any) -> bool:
    """Whether a uvicorn connection has something to answer: a request in progress, a request whose
    headers are still arriving (httptools starts a new ``scope`` at the first byte, the ``cycle`` at
    the end of the headers), or bytes the event loop has not read yet."""
    cycle = getattr(connection, "cycle", None)
    if cycle is not None and not cycle.response_complete:
        return True
    scope = getattr(connection, "scope", None)
    if scope is not None and scope is not getattr(cycle, "scope", None):
        return True
    return _unread(connection.transport) > 0


def _unread(transport: Any) -> int:
    """Bytes received on ``transport``'s socket that nobody has read yet (``FIONREAD``; 0 if unknown)."""
    sock = transport.get_extra_info("socket")
    if sock is None or transport.is_closing():
        return 0
    try:
        return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.FIONREAD, bytes(4)), sys.byteorder)
    except (OSError, ValueError):
        return 0


def _setting_up(listeners: list[Any]) -> int:
    """Connections accepted but not yet handed to the protocol (a TLS handshake in progress); only
    :class:`service.bento.accept.BatchListener` knows them."""
    return sum(getattr(listener, "setting_up", 0) for listener in listeners)


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
            while (connections or _setting_up(server.servers)) and loop.time() < end:
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
    """Close the listeners without resetting connections the kernel has queued or half-opened: first
    stop new handshakes (:func:`_refuse_new_connections`; new connection attempts wait, then meet a
    closed port), give the handshakes under way time to complete, let the event loop accept what is
    queued, then close at a moment the queue is seen empty (closing a listener resets what its queue
    holds, and the handshakes it has answered: those clients would never get an answer)."""
    sockets = [sock for listener in listeners for sock in listener.sockets]
    for sock in sockets:
        _refuse_new_connections(sock)
    await asyncio.sleep(0.05)
    for _ in range(100):  # at most about 0.5 s more
        if not any(_queued(sock) for sock in sockets):
            break
        await asyncio.sleep(0.005)
    for listener in listeners:  # no await between the check and the close
        listener.close()


_DROP_SYN = b"".join(
    struct.pack("HBBI", *insn)
    for insn in (
        (0x30, 0, 0, 13),  # A = byte 13 of the TCP header (its flags)
        (0x54, 0, 0, 0x12),  # A &= SYN | ACK
        (0x15, 0, 1, 0x02),  # a SYN without ACK (a new connection)?
        (0x06, 0, 0, 0),  # then drop it
        (0x06, 0, 0, 0xFFFFFFFF),  # else keep the whole packet
    )
)
"""A classic BPF socket filter that drops the first packet of new TCP connections (Linux runs a
listener's filter on what arrives at it; a TCP socket's filter sees the packet from the TCP header)."""
_SO_ATTACH_FILTER = 26  # Linux; the socket module does not name it


def _refuse_new_connections(sock: Any) -> bool:
    """Make the listening ``sock`` complete no new handshake while it still hands over what it has:
    attach :data:`_DROP_SYN` (a client whose SYN is dropped retries it after about a second, by when
    the listener is closed). Without socket filters, shrink its accept queue to one instead."""
    code = ctypes.create_string_buffer(_DROP_SYN)
    program = struct.pack("HL", len(_DROP_SYN) // 8, ctypes.addressof(code))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, program)
        return True
    except OSError:
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(sock.fileno())) as same:
            same.listen(0)
        return False


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
