"""Large request bodies read straight into one buffer, not piece by piece through uvicorn's parser.

uvicorn's httptools protocol passes every arrival of a body through the event loop as a new ``bytes``
object into the HTTP parser, whose body callback appends it to a ``bytearray`` (reading paused past
64 KiB until the app asks for more); each ``receive()`` then copies what has gathered into ``bytes``
again, and the app joins the pieces. Measured on one core, a bare uvicorn app reading bodies from four
keep-alive connections: 2.1-3.0 ms of CPU per 3.2 MB body (a 1,024-image V2 binary request) and
223-253 µs per 200 kB one, against 0.87-0.97 ms and ~170 µs for a buffered protocol that has the
kernel copy each body into one buffer of its ``Content-Length``.

:func:`patch_body_read` does that for a request on one of our routes (the fast lane's paths) whose
body has a single ``Content-Length`` between :data:`MIN_DIRECT` and ``SERVING_MAX_BODY_BYTES``, on
plain TCP. Until the app first asks for the body, uvicorn gathers it as before (up to its 64 KiB mark,
then it stops reading); at that first ``receive()`` what has gathered moves into a buffer of the body's
length and the connection goes to a :class:`BodyReader`, a buffered protocol that reads the rest into
that buffer (never past the body, so a pipelined request stays in the kernel) and, once it is full,
gives the connection back with a fresh parser, as if the old one had seen the message end. The app's
``receive()`` gets the whole body at once, as that ``bytearray`` (or, when the whole body had come
before the app asked, as the ``bytearray`` uvicorn gathered it in, where uvicorn would copy it into
``bytes``). A request answered before it asks
(admission's 503, an unknown model's 404) never gets a buffer: its body is skipped as before
(:mod:`service.bento.discard`), and so is the rest of one answered while it arrives (a deadline).
Bodies over the limit keep uvicorn's path (the app answers 413 without reading them), and the buffers
of bodies still arriving take at most :data:`BUDGET` bytes per worker (beyond it uvicorn's path, which
holds only what has arrived), so slow clients declaring large bodies cannot make a worker allocate more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.bento.discard import HandBack, content_length, patch_discard
from service.bento.patches import ACTIVE, applicable

MIN_DIRECT = 64 * 1024
"""Smaller bodies take uvicorn's path (one or two arrivals: nothing to gain)."""
BUDGET = 64 * 1024 * 1024
"""The most bytes of direct buffers whose bodies are still arriving, per worker."""
_pending = 0
"""Bytes of direct buffers now waiting for their bodies (event loop only)."""


def _reserve(cycle: Any, length: int) -> bool:
    """Take ``length`` bytes of the budget for ``cycle``'s buffer, if there are that many left."""
    global _pending
    if _pending + length > BUDGET:
        return False
    _pending += length
    cycle.reserved = length
    return True


def _release(cycle: Any) -> None:
    """Give ``cycle``'s share of the budget back (once: its body is in, skipped, or its client gone)."""
    global _pending
    _pending -= cycle.reserved
    cycle.reserved = 0


class BodyReader(HandBack):
    """Reads the rest of ``cycle``'s body into its buffer, then hands the connection back to ``http``."""

    def __init__(self, http: Any, cycle: Any) -> None:
        super().__init__(http)
        self.cycle = cycle
        self.view = memoryview(cycle.direct)
        self.low_water(len(self.view) - cycle.direct_got)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view[self.cycle.direct_got :]

    def buffer_updated(self, nbytes: int) -> None:
        cycle = self.cycle
        self.http._unset_keepalive_if_required()  # the client is sending (as uvicorn's data_received)
        cycle.direct_got += nbytes
        cycle.body_seen += nbytes
        if cycle.direct_got < len(self.view):
            self.low_water(len(self.view) - cycle.direct_got)
            return
        _release(cycle)
        self.give_back(keep_alive=cycle.response_complete)  # answered before its body was in: as after it
        cycle.more_body = False
        cycle.message_event.set()

    def connection_lost(self, exc: Exception | None) -> None:
        _release(self.cycle)
        super().connection_lost(exc)


def patch_body_read(ours: Callable[[str], bool], limit: int) -> None:
    """Read the bodies of requests on paths ``ours`` accepts (``MIN_DIRECT`` to ``limit`` bytes) with a
    :class:`BodyReader` once the app asks for them (plain TCP only; TLS keeps the parser)."""
    if ACTIVE["direct_body"] or not applicable("direct_body"):
        return
    patch_discard()  # the skip of an early answer's body counts what the parser saw (``body_seen``)
    from uvicorn.protocols.http import httptools_impl

    cls: Any = httptools_impl.HttpToolsProtocol
    cycle_cls: Any = httptools_impl.RequestResponseCycle
    on_headers_complete, on_response_complete = cls.on_headers_complete, cls.on_response_complete
    receive = cycle_cls.receive
    cycle_cls.http = None  # the connection's protocol, while the cycle may still read directly
    cycle_cls.direct_length = 0
    cycle_cls.direct = None  # the body's buffer once it does
    cycle_cls.direct_got = 0
    cycle_cls.reserved = 0
    if not hasattr(cycle_cls, "body_seen"):
        cycle_cls.body_seen = 0

    def direct_headers_complete(self: Any) -> None:
        on_headers_complete(self)
        if self.pipeline or type(self.transport).__name__ != "TCPTransport":  # queued, or TLS
            return
        length = content_length(self.headers)
        if length is not None and MIN_DIRECT <= length <= limit and ours(self.scope["path"]):
            self.cycle.http = self  # until its first receive(): a request refused before never reads
            self.cycle.direct_length = length

    def direct_response_complete(self: Any) -> None:
        cycle = self.cycle
        if cycle is not None:
            cycle.http = None
            if cycle.reserved:  # answered before its body was in: skipped from here
                _release(cycle)
        on_response_complete(self)

    def start_direct(self: Any) -> bool:
        """Move the body gathered so far into a buffer of its length and read the rest into it."""
        http, self.http = self.http, None
        length = self.direct_length
        if not self.more_body or self.disconnected or not _reserve(self, length):
            return False
        gathered = len(self.body)
        self.direct = bytearray(length)
        self.direct[:gathered] = self.body
        self.body = bytearray()
        self.direct_got = gathered
        self.message_event.clear()  # set by the parser for what it gathered: wait for the whole body
        http.transport.set_protocol(BodyReader(http, self))
        return True

    async def direct_receive(self: Any) -> Any:
        whole = self.direct is None and self.http is not None and not self.more_body
        if whole and not self.disconnected and not self.response_complete:
            # the whole body came before the app asked: uvicorn's own buffer, not a copy of it
            self.http = None
            body, self.body = self.body, bytearray()
            return {"type": "http.request", "body": body, "more_body": False}
        if self.direct is None and (self.http is None or self.response_complete or not start_direct(self)):
            return await receive(self)
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete and self.more_body:
            self.flow.resume_reading()
            await self.message_event.wait()
        self.message_event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body, self.direct = self.direct, None
        return {"type": "http.request", "body": body, "more_body": False}

    cls.on_headers_complete = direct_headers_complete
    cls.on_response_complete = direct_response_complete
    cycle_cls.receive = direct_receive
    ACTIVE["direct_body"] = True
