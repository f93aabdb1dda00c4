"""Skip the unread body of a request that was answered before its body was read, without parsing it.

Admission answers 503 (or 404 for an unknown model) as soon as the headers are in, before the body is
read; the client still sends the body, and the server has to take it off the connection before the
next request. uvicorn passes every piece of it through the loop as a new ``bytes`` object, into the
HTTP parser and its body callback, only to drop it: measured on one core with 1,024-image V2 binary
requests at 4x the capacity (85 % of them refused), ONNX Runtime had 53 % of the worker's CPU samples
against 67 % at 0.9x, the difference being the refused bodies (kernel copies, ``memmove``, the
interpreter).

:func:`patch_discard` makes uvicorn's httptools protocol, once such a response is complete and at
least :data:`MIN_SKIP` bytes of a ``Content-Length`` body are still to come, hand the connection to a
:class:`Skipper`: a buffered protocol that takes exactly the bytes left off the connection and then
gives it back with a fresh parser, so the next request on it is read as usual. The event loop reads a
first piece of each arrival into one reused buffer; what else the kernel holds of the body then is
discarded where it lies (``recv`` with ``MSG_TRUNC``: Linux drops TCP data without copying it out,
half the receiving CPU of a 3.2 MB body in a loopback probe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from typing import Any

from service.bento.patches import ACTIVE, applicable

log = logging.getLogger("service.bento")

MIN_SKIP = 64 * 1024
"""Bodies with fewer bytes left than this are dropped by the parser as before (not worth a switch)."""
CHUNK = 1 << 20
"""The most one ``recv`` takes off the connection while skipping."""
COPIED = 64 * 1024
"""The most the event loop copies out of each arrival (the rest is discarded by :func:`_discard`)."""
_TRUNCATE = getattr(socket, "MSG_TRUNC", 0) if sys.platform == "linux" else 0
"""Linux: ``recv`` with it drops TCP data without copying it (elsewhere it means something else)."""
LOW_WATER = 1 << 20
"""While a body is taken off a connection, the event loop is woken only once this many of its bytes
(or all that is left of it) have arrived (``SO_RCVLOWAT``), not for each segment: a new loopback
connection's window lets ~64 KiB through at a time, so a 3.2 MB body arrived in ~50 pieces, each a
wake-up, a read and a window update."""


_buffer = memoryview(bytearray(CHUNK))
"""Where every skipper of this process reads into: each read is dropped before the next is taken."""


class HandBack(asyncio.BufferedProtocol):
    """Takes the rest of a request's body off ``http``'s connection, then gives the connection back to
    it (:meth:`give_back`); what the connection reports meanwhile goes to ``http``."""

    def __init__(self, http: Any) -> None:
        self.http = http
        self.low = 1  # the connection's SO_RCVLOWAT as set here (1: the kernel's default)

    def low_water(self, remaining: int) -> None:
        """Have the kernel report the connection readable once ``remaining`` bytes (at most
        :data:`LOW_WATER`) have arrived. Linux raises the receive buffer to fit and still reports it
        readable when the window closes first; the end of the stream or an error wakes it anyway."""
        want = max(1, min(remaining, LOW_WATER))
        if want == self.low:
            return
        self.low = want
        sock = self.http.transport.get_extra_info("socket")
        with contextlib.suppress(OSError, AttributeError, TypeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)

    def give_back(self, keep_alive: bool) -> None:
        """The body is off the connection: ``http`` reads on with a fresh parser (the old one is still
        inside the body); ``keep_alive``: its response is complete, so uvicorn's keep-alive timer is
        armed as after any response."""
        self.low_water(1)  # the next request's head is read as soon as it comes
        http = self.http
        http.parser = type(http.parser)(http)
        lenient(http.parser)
        http.transport.set_protocol(http)
        if (
            keep_alive
            and not http.transport.is_closing()
            and http.timeout_keep_alive_task is None
            and not http.pipeline
        ):
            http.timeout_keep_alive_task = http.loop.call_later(
                http.timeout_keep_alive, http.timeout_keep_alive_handler
            )

    def eof_received(self) -> bool | None:
        return self.http.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.http.connection_lost(exc)

    def pause_writing(self) -> None:
        self.http.pause_writing()

    def resume_writing(self) -> None:
        self.http.resume_writing()


class Skipper(HandBack):
    """Takes ``remaining`` bytes off the connection, then hands it back to ``http``."""

    def __init__(self, http: Any, remaining: int) -> None:
        super().__init__(http)
        self.remaining = remaining
        sock = http.transport.get_extra_info("socket")
        self.fd: int = sock.fileno() if sock is not None and _TRUNCATE else -1
        self.low_water(remaining)

    def get_buffer(self, sizehint: int) -> memoryview:
        limit = CHUNK if self.fd < 0 else COPIED
        return _buffer[: min(self.remaining, limit)]  # never past this body

    def buffer_updated(self, nbytes: int) -> None:
        self.http._unset_keepalive_if_required()  # the client is sending (as uvicorn's data_received)
        self.remaining -= nbytes
        if self.remaining > 0 and self.fd >= 0:
            self.remaining -= _discard(self.fd, self.remaining)
        if self.remaining <= 0:
            self.give_back(keep_alive=True)  # its response went out before the body was skipped
        else:
            self.low_water(self.remaining)


def _discard(fd: int, most: int) -> int:
    """Drop up to ``most`` bytes the kernel holds for the socket ``fd`` without copying them out; how
    many it dropped. Stops at the first would-block, end or error: the event loop's own read then
    finds the error or the end and tells the protocol, as it would have."""
    dropped = 0
    with socket.socket(fileno=os.dup(fd)) as sock:  # a second descriptor: the transport keeps its own
        sock.setblocking(False)
        while dropped < most:
            try:
                got = sock.recv_into(_buffer, min(most - dropped, CHUNK), _TRUNCATE)
            except OSError:
                break
            if got <= 0:
                break
            dropped += got
    return dropped


def lenient(parser: Any) -> None:
    """The parser setting uvicorn makes on its own parsers (answering the first of pipelined requests)."""
    with contextlib.suppress(AttributeError):  # httptools < 0.6.3 has no such setting
        parser.set_dangerous_leniencies(lenient_data_after_close=True)


def content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The request's body length, or ``None`` unless it has exactly one ``Content-Length`` and no
    ``Transfer-Encoding`` (then the parser goes on deciding where the body ends)."""
    lengths = [value for name, value in headers if name == b"content-length"]
    if (
        len(lengths) != 1
        or not lengths[0].isdigit()
        or any(name == b"transfer-encoding" for name, _ in headers)
    ):
        return None
    return int(lengths[0])


def patch_discard() -> None:
    """Count the body bytes uvicorn's httptools protocol parses (on the request's cycle), and skip the
    rest of a body whose response is already complete with a :class:`Skipper` (plain TCP only; TLS
    keeps the parser)."""
    if ACTIVE["skip_answered_body"] or not applicable("skip_answered_body"):
        return
    from uvicorn.protocols.http import httptools_impl

    cls: Any = httptools_impl.HttpToolsProtocol
    on_body, on_response_complete = cls.on_body, cls.on_response_complete
    cycle_cls: Any = httptools_impl.RequestResponseCycle
    cycle_cls.body_seen = 0

    def counting_body(self: Any, body: bytes) -> None:
        self.cycle.body_seen += len(body)
        on_body(self, body)

    def skipping_response_complete(self: Any) -> None:
        on_response_complete(self)
        cycle = self.cycle
        # more_body: the parser has not reached the end of this request's body yet
        if not cycle.more_body or self.transport.is_closing():
            return
        if type(self.transport).__name__ != "TCPTransport":  # uvloop's plain TCP; TLS keeps the parser
            return
        length = content_length(self.headers)
        remaining = None if length is None else length - cycle.body_seen
        if remaining is None or remaining < MIN_SKIP:
            return
        # uvicorn's keep-alive timer stays armed until the first bytes come (a client that sent
        # "Expect: 100-continue" may never send the body)
        self.transport.set_protocol(Skipper(self, remaining))

    cls.on_body = counting_body
    cls.on_response_complete = skipping_response_complete
    ACTIVE["skip_answered_body"] = True
