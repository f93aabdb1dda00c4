"""The drain of one worker (service/bento/drain.py) in a real uvicorn on a thread, over real sockets:
what the kernel or the event loop holds at the signal is answered, not reset.

The end-to-end test (test_drain_e2e.py) signals a real `bentoml serve` under load; these pin the three
moments where a client could lose a request it had already sent: a handshake the listener answered
just before it closed, a connection still in its TLS handshake, a request whose headers are arriving
when idle connections are closed.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import pytest
import uvicorn
import uvloop

from service.bento import accept, drain, patches
from service.dataplane import DataPlane
from tests.service.bento.security_helpers import write_certificates
from tests.service.bento.threaded import serving

GRACE_S = 0.3  # IDLE_GRACE_S in these tests
BUDGET_S = 3.0


def app_for(worker_drain: drain.Drain, plane: Any) -> Any:
    """An ASGI app that attaches ``worker_drain`` at start-up and answers ``ok``, closing the connection
    once draining (as the service's responses do)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                worker_drain.attach(cast(DataPlane, plane), None)
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-length", b"2")] + [(b"connection", b"close")] * plane.draining
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@contextmanager
def draining_server(
    monkeypatch: pytest.MonkeyPatch, **tls: Any
) -> Iterator[tuple[uvicorn.Server, drain.Drain, tuple[str, int]]]:
    """uvicorn with the batch listener on a bound socket, as a BentoML worker has it, and its drain."""
    monkeypatch.setattr(uvicorn.Server, "startup", uvicorn.Server.startup)  # undone after the test
    monkeypatch.setitem(patches.ACTIVE, "batch_accept", False)
    monkeypatch.setattr(drain, "IDLE_GRACE_S", GRACE_S)
    accept.patch_accept()
    worker_drain = drain.Drain(BUDGET_S)
    plane = SimpleNamespace(draining=False)  # the one field of the data plane the drain sets
    config = uvicorn.Config(app_for(worker_drain, plane), loop="uvloop", log_level="warning", **tls)
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    address = sock.getsockname()
    with serving(server, sock):
        yield server, worker_drain, address


def answer(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 5 s pass)."""
    conn.settimeout(5)
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def first_answer(conn: socket.socket) -> bytes:
    """One whole answer on a connection that stays open (every answer of :func:`app_for` ends in ok)."""
    conn.settimeout(5)
    data = b""
    while not data.endswith(b"ok"):
        data += conn.recv(65536)
    return data


def drained_within(server: uvicorn.Server, seconds: float) -> float:
    """Seconds until the drain hands over to uvicorn's shutdown (fails after ``seconds``)."""
    started = time.monotonic()
    while not server.should_exit:
        assert time.monotonic() - started < seconds, "the drain did not finish"
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_a_stopped_listener_completes_no_new_handshake_and_hands_over_the_queued_one(
    family: socket.AddressFamily, host: str
) -> None:
    """The connection already queued is accepted and its bytes read; after that a new SYN is dropped (the
    client would retry into a closed port). Shrinking the accept queue instead let one more handshake
    complete once the queue was empty, and closing the listener then reset that connection."""
    with socket.socket(family) as listener:
        listener.bind((host, 0))
        listener.listen(16)
        address = listener.getsockname()[:2]
        with socket.create_connection(address) as queued:
            queued.sendall(b"sent before the stop")
            assert drain._refuse_new_connections(listener)
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.recv(64) == b"sent before the stop"
                accepted.sendall(b"answered")  # the filter a child inherits lets its traffic through
                assert queued.recv(64) == b"answered"
            with pytest.raises(TimeoutError):
                socket.create_connection(address, timeout=0.5).close()


def test_a_connection_in_its_tls_handshake_at_the_signal_is_answered(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Accepted but not yet a connection of uvicorn's (the handshake under way): the drain waits for it
    instead of finding no connection and stopping the worker under it."""
    certs = write_certificates(tmp_path)
    tls = {"ssl_certfile": str(certs["cert"]), "ssl_keyfile": str(certs["key"])}
    with draining_server(monkeypatch, **tls) as (server, worker_drain, address):
        raw = socket.create_connection(address)
        listener = server.servers[0]
        deadline = time.monotonic() + 5
        while listener.setting_up == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert listener.setting_up == 1 and not server.server_state.connections
        assert worker_drain.begin(server)
        time.sleep(0.3)  # without the wait the worker stopped 0.05 s after the signal
        context = ssl.create_default_context(cafile=str(certs["ca"]))
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = answer(conn)
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok"), reply
        assert b"connection: close" in reply.lower()
        assert drained_within(server, 2) < 2


def test_a_request_whose_headers_are_arriving_when_idle_connections_close_is_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A keep-alive connection sends half its next request's headers after the signal and the rest after
    the idle grace: it is not idle (httptools has begun the request), so it is answered, then closed."""
    with draining_server(monkeypatch) as (server, worker_drain, address):
        with socket.create_connection(address) as conn:
            conn.sendall(b"GET /first HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = first_answer(conn)
            assert first.startswith(b"HTTP/1.1 200") and b"close" not in first.lower()
            assert worker_drain.begin(server)
            time.sleep(0.1)
            conn.sendall(b"GET /second HTTP/1.1\r\n")
            time.sleep(GRACE_S + 0.4)
            conn.sendall(b"Host: 127.0.0.1\r\n\r\n")
            reply = answer(conn)
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok"), reply
        assert b"connection: close" in reply.lower()


def test_an_idle_connection_is_closed_at_the_grace_and_the_drain_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing sent after the signal: closed once the idle grace has passed, and the drain ends then,
    long before its budget."""
    with draining_server(monkeypatch) as (server, worker_drain, address):
        with socket.create_connection(address) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert first_answer(conn).startswith(b"HTTP/1.1 200")
            assert worker_drain.begin(server)
            took = drained_within(server, BUDGET_S)
            assert answer(conn) == b""  # closed, with nothing half-sent
        assert GRACE_S - 0.05 <= took < BUDGET_S - 1, took


def test_bytes_the_event_loop_has_not_read_make_a_connection_busy() -> None:
    """A connection whose reading is paused (the event loop has not read what arrived) is not idle."""

    class Paused(asyncio.Protocol):
        transports: ClassVar[list[Any]] = []

        def connection_made(self, transport: Any) -> None:
            Paused.transports.append(transport)  # paused below: uvloop starts reading after this call

    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        listening = await loop.create_server(Paused, "127.0.0.1", 0)
        address = listening.sockets[0].getsockname()
        with socket.create_connection(address) as client:
            for _ in range(200):
                if Paused.transports:
                    break
                await asyncio.sleep(0.01)
            transport = Paused.transports[0]
            await asyncio.sleep(0.02)
            transport.pause_reading()
            before = drain._busy(SimpleNamespace(transport=transport))
            client.sendall(b"GET / HTTP/1.1\r\n")
            await asyncio.sleep(0.05)
            after = drain._busy(SimpleNamespace(transport=transport))
            transport.close()
        listening.close()
        return before, after

    assert uvloop.run(main()) == (False, True)
