"""New connections are accepted in batches (service/bento/accept.py), by a real uvicorn over real sockets.

uvloop's own listener accepts one connection per event-loop iteration; these tests call the listener's
readiness handler once, as one iteration would, and count what it accepted, then serve HTTP through
uvicorn's own startup with the patch applied.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
import uvicorn
import uvloop

from service.bento import accept, patches
from tests.service.bento.threaded import serving


class Counting(asyncio.Protocol):
    made: ClassVar[list[asyncio.BaseTransport]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Counting.made.append(transport)


def bound() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def test_one_readiness_accepts_a_batch_and_the_rest_on_the_next() -> None:
    """200 connections wait in the accept queue: one call accepts BATCH (128) of them, the next the other
    72 and a third finds none; every accepted one reaches the protocol through the event loop."""
    Counting.made = []

    async def main() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        sock = bound()
        listener = accept.BatchListener(loop, Counting, sock, ssl_context=None, backlog=1024)
        loop.remove_reader(sock.fileno())  # drive it by hand: one call = one loop iteration's accept
        clients = [socket.create_connection(sock.getsockname()) for _ in range(200)]
        try:
            counts = []
            for _ in range(3):
                listener._accept()
                counts.append(len(listener._tasks))
                await asyncio.sleep(0.05)  # the connect tasks run
            assert len(Counting.made) == 200
            assert all(t.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                       for t in Counting.made)  # fmt: skip
            return counts[0], counts[1], counts[2]
        finally:
            for client in clients:
                client.close()
            for transport in Counting.made:
                transport.close()
            listener.close()

    first, second, third = uvloop.run(main())
    assert (first, second, third) == (accept.BATCH, 200 - accept.BATCH, 0)


class OutOfDescriptorsOnce(socket.socket):
    """A listening socket whose first ``accept`` fails as a process out of file descriptors does."""

    calls: ClassVar[list[float]] = []

    def accept(self) -> tuple[socket.socket, Any]:
        OutOfDescriptorsOnce.calls.append(time.monotonic())
        if len(OutOfDescriptorsOnce.calls) == 1:
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


def test_out_of_file_descriptors_pauses_accepting_and_resumes() -> None:
    """EMFILE: the listener stops watching the socket (no busy loop on a queue it cannot take) and
    watches again a second later; the connection waiting meanwhile is then accepted."""
    Counting.made, OutOfDescriptorsOnce.calls = [], []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sock = OutOfDescriptorsOnce()
        sock.bind(("127.0.0.1", 0))
        listener = accept.BatchListener(loop, Counting, sock, ssl_context=None, backlog=16)
        client = socket.create_connection(sock.getsockname())
        try:
            for _ in range(40):
                await asyncio.sleep(0.05)
                if Counting.made:
                    break
            assert len(Counting.made) == 1
            calls = OutOfDescriptorsOnce.calls
            assert calls[1] - calls[0] >= 0.9, calls  # paused about a second, not retried at once
        finally:
            client.close()
            for transport in Counting.made:
                transport.close()
            listener.close()
        assert listener.sockets == () and not listener.is_serving()
        await listener.wait_closed()

    uvloop.run(main())


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


@pytest.fixture
def patched_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[uvicorn.Server, int]]:
    """uvicorn serving a bound (not listening) socket, as BentoML's worker has it, with the patch on;
    each batch listener records whether the server already said it had started when it was made."""
    monkeypatch.setattr(uvicorn.Server, "startup", uvicorn.Server.startup)  # undone after the test
    monkeypatch.setitem(patches.ACTIVE, "batch_accept", False)
    accept.patch_accept()
    assert patches.ACTIVE["batch_accept"]
    init = accept.BatchListener.__init__

    def recording_init(self: accept.BatchListener, *args: Any, **kwargs: Any) -> None:
        STARTED_BEFORE_LISTENING.append(server.started)
        init(self, *args, **kwargs)

    monkeypatch.setattr(accept.BatchListener, "__init__", recording_init)
    STARTED_BEFORE_LISTENING.clear()
    sock = bound()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(echo_app, loop="uvloop", log_level="warning", lifespan="off"))
    with serving(server, sock):  # and it shuts down with the batch listener
        yield server, port


STARTED_BEFORE_LISTENING: list[bool] = []


def test_uvicorn_serves_the_given_socket_through_the_batch_listener(
    patched_server: tuple[uvicorn.Server, int],
) -> None:
    """Served, and ``started`` (what callers wait for) only once the socket listens: a client that
    connects as soon as it is set is not refused."""
    server, port = patched_server
    assert [type(s) for s in server.servers] == [accept.BatchListener]
    assert STARTED_BEFORE_LISTENING == [False] and server.started
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        answers = [client.get(f"/n{i}") for i in range(5)]  # one keep-alive connection
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.text for a in answers] == [f"/n{i}" for i in range(5)]
    many = [httpx.get(f"http://127.0.0.1:{port}/c{i}") for i in range(20)]  # a new connection each
    assert [a.text for a in many] == [f"/c{i}" for i in range(20)]
