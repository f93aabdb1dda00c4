"""Accept new connections in batches, so a busy worker does not keep them waiting for seconds.

uvloop's listener is libuv's, and libuv (since 1.45) accepts one connection per event-loop iteration.
Under load an iteration serves hundreds of ready connections and takes milliseconds, so a burst of new
connections waits in the kernel's accept queue for one iteration each: measured on one core at the
saturation rate, the first request on a new connection waited 0.4-1.9 s (p50-p99) while requests on
open connections waited 0.11-0.17 s, and 512 open-loop connections gave a 1-3 s p99 that no admission
budget could bound (the request had not reached the server yet). asyncio's own listener accepts up to
the backlog per iteration and does not show it.

:class:`BatchListener` serves a listening socket the way asyncio's does (up to :data:`BATCH` accepts
each time the socket is readable, each connection handed to the event loop with
``connect_accepted_socket``) and looks like an ``asyncio.Server`` to uvicorn and the drain, which also
learns from it the connections still being set up.
:func:`patch_accept` makes ``uvicorn.Server.startup`` use it for the sockets BentoML's worker passes.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from service.bento.patches import ACTIVE, applicable

log = logging.getLogger("service.bento")

BATCH = 128
"""Connections accepted per readiness of the listening socket (the rest: next loop iteration)."""
_PAUSE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class BatchListener:
    """A listening socket served by the event loop with batched ``accept``; the parts of
    ``asyncio.Server`` that uvicorn and the drain use (``sockets``, ``close``, ``wait_closed``)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.Protocol],
        sock: socket.socket,
        *,
        ssl_context: ssl.SSLContext | None,
        backlog: int,
    ) -> None:
        self._loop, self._factory, self._ssl, self._sock = loop, protocol_factory, ssl_context, sock
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = asyncio.Event()
        sock.setblocking(False)
        sock.listen(backlog)
        loop.add_reader(sock.fileno(), self._accept)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed.is_set() else (self._sock,)

    @property
    def setting_up(self) -> int:
        """Connections accepted and not yet handed to the protocol (their TLS handshake under way)."""
        return len(self._tasks)

    def is_serving(self) -> bool:
        return not self._closed.is_set()

    def _accept(self) -> None:
        for _ in range(BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _PAUSE_ERRORS:
                    raise
                # Out of file descriptors or memory: stop accepting for a moment (asyncio does the same)
                log.error("cannot accept connections (%s); pausing 1 s", exc.strerror)
                self._loop.remove_reader(self._sock.fileno())
                self._loop.call_later(1.0, self._resume)
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self._loop.create_task(self._connect(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _resume(self) -> None:
        if not self._closed.is_set():
            self._loop.add_reader(self._sock.fileno(), self._accept)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn, ssl=self._ssl)
        except (OSError, ssl.SSLError) as exc:  # the client left, or its TLS handshake failed
            log.debug("connection not set up: %s", exc)
            conn.close()

    def close(self) -> None:
        """Stop accepting and close the socket (what its accept queue holds is reset, as asyncio does)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    async def wait_closed(self) -> None:
        await self._closed.wait()


def patch_accept() -> None:
    """Make uvicorn serve the sockets it is given (BentoML's worker gives one) with :class:`BatchListener`.

    uvicorn's ``startup`` runs as it is with no socket (the lifespan start-up, the server state), then
    listens on each given socket itself, with the protocol factory uvicorn would have used."""
    if ACTIVE["batch_accept"] or not applicable("batch_accept"):
        return
    import uvicorn

    cls: Any = uvicorn.Server
    original = cls.startup

    async def startup(self: Any, sockets: list[socket.socket] | None = None) -> None:
        if not sockets:
            return await original(self, sockets)
        await original(self, [])  # exits the process itself when the lifespan start-up fails
        if not self.started:  # the lifespan asked to stop: uvicorn ends without serving
            return
        self.started = False  # not before the sockets below listen (uvicorn's own order)
        config, loop = self.config, asyncio.get_running_loop()

        def create_protocol() -> asyncio.Protocol:
            return config.http_protocol_class(
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=loop
            )

        for sock in sockets:
            listener = BatchListener(
                loop, create_protocol, sock, ssl_context=config.ssl, backlog=config.backlog
            )
            self.servers.append(listener)
        self.started = True

    cls.startup = startup
    ACTIVE["batch_accept"] = True
