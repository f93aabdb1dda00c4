"""Large bodies of our routes read straight into one buffer (service/bento/bodyread.py), by a real uvicorn
(httptools, uvloop) over real loopback sockets: the body arrives whole and intact as one message, the
requests behind it on the connection are read from where it ends, and the buffers' budget is given back
however a request ends (answered, refused early, client gone)."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from uvicorn.protocols.http import httptools_impl

from service.bento import bodyread, discard, patches
from service.protocols.routes import is_ours
from tests.service.bento.test_discard import Reader, post, send_in_background
from tests.service.bento.threaded import body_parts, serving_app


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``.../refuse``: 503 before reading the body; ``.../echo``: the body's length, hash, how many
    messages brought it and the type of the first."""
    if scope["type"] != "http":
        return
    if scope["path"].endswith("/refuse"):
        body, status = b"refused", 503
    else:
        parts = await body_parts(receive)
        data = b"".join(parts)
        digest = hashlib.sha256(data).hexdigest()
        body, status = f"{len(data)} {digest} {len(parts)} {type(parts[0]).__name__}".encode(), 200
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def answer(data: bytes, direct: bool) -> bytes:
    """What ``/echo`` says of ``data``: one bytearray (read directly, or gathered whole by uvicorn before
    the app asked and handed over as it is) or by uvicorn's ``receive`` (bytes)."""
    digest = hashlib.sha256(data).hexdigest()
    return f"{len(data)} {digest} 1 bytearray".encode() if direct else f"{len(data)} {digest}".encode()


def check(got: tuple[int, bytes], data: bytes, direct: bool | None) -> None:
    """``data`` arrived intact, read directly (``True``), by uvicorn (``False``) or either (``None``:
    a body that may be in whole before the app asks for it is uvicorn's as before)."""
    status, body = got
    assert status == 200
    assert body.startswith(answer(data, False)), body
    if direct is not None:
        assert body.endswith(b" 1 bytearray") is direct, body


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, list[int]]]:
    """uvicorn on a free loopback port with the patch on (our paths, the default 16 MiB limit); yields
    the port and the lengths of the bodies a BodyReader read."""
    if not patches.ACTIVE["direct_body"]:  # (importing service.service in this process applies it)
        cls, cycle = httptools_impl.HttpToolsProtocol, httptools_impl.RequestResponseCycle
        for name in ("on_body", "on_response_complete", "on_headers_complete"):
            monkeypatch.setattr(cls, name, getattr(cls, name))  # undone after the test
        monkeypatch.setattr(cycle, "receive", cycle.receive)
        defaults = {"body_seen": 0, "direct": None, "direct_got": 0, "reserved": 0, "http": None,
                    "direct_length": 0}  # fmt: skip
        for name, default in defaults.items():
            monkeypatch.setattr(cycle, name, default, raising=False)
        monkeypatch.setitem(patches.ACTIVE, "skip_answered_body", patches.ACTIVE["skip_answered_body"])
        monkeypatch.setitem(patches.ACTIVE, "direct_body", False)
        bodyread.patch_body_read(is_ours, 16 * 1024 * 1024)
    assert patches.ACTIVE["direct_body"] and patches.ACTIVE["skip_answered_body"]
    read: list[int] = []
    init = bodyread.BodyReader.__init__

    def recording_init(self: bodyread.BodyReader, http: Any, cycle: Any) -> None:
        read.append(len(cycle.direct))
        init(self, http, cycle)

    monkeypatch.setattr(bodyread.BodyReader, "__init__", recording_init)
    with serving_app(app) as port:
        yield port, read
    assert bodyread._pending == 0, "every buffer's share of the budget was given back"


def test_a_large_body_arrives_whole_and_the_next_requests_are_read_as_before(
    server: tuple[int, list[int]],
) -> None:
    port, read = server
    big, mid, small = bytes(range(256)) * 12_500, b"m" * 200_000, b"s" * 1000
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = Reader(sock)
        # mid: read directly, or in whole before the app asked and then handed over uncopied: one bytearray
        for data, direct in ((big, True), (small, False), (mid, True), (small, False)):
            sender = send_in_background(sock, post("/v1/echo", data))
            check(reader.response(), data, direct)
            sender.join(10)
    assert len(big) in read, "the 3.2 MB body was read by a BodyReader (it cannot come in one read)"


def test_requests_pipelined_behind_a_direct_body_are_read_from_where_it_ends(
    server: tuple[int, list[int]],
) -> None:
    port, read = server
    first, second, third = b"1" * 600_000, b"second", b"3" * 100_000
    burst = post("/v1/echo", first) + post("/v1/echo", second) + post("/v1/echo", third)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = Reader(sock)
        sender = send_in_background(sock, burst)
        check(reader.response(), first, True)
        check(reader.response(), second, False)
        check(reader.response(), third, None)  # direct or not: when did the first answer go out
        sender.join(10)
    assert read[:1] == [len(first)]


def test_other_paths_and_bodies_over_the_budget_keep_uvicorns_path(
    server: tuple[int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, read = server
    big = b"o" * 500_000
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sender = send_in_background(sock, post("/other/echo", big))  # not one of our routes
        check(Reader(sock).response(), big, False)
        sender.join(10)
    monkeypatch.setattr(bodyread, "BUDGET", 700_000)
    body = b"h" * 400_000
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as one,
        socket.create_connection(("127.0.0.1", port), timeout=10) as two,
    ):
        head, rest = post("/v1/echo", body)[:-100_000], post("/v1/echo", body)[-100_000:]
        one.sendall(head)  # its buffer takes 400 kB of the 700 kB while the rest has not come
        time.sleep(0.2)
        sender = send_in_background(two, post("/v1/echo", body))  # 400 kB more would be over
        check(Reader(two).response(), body, False)
        sender.join(10)
        one.sendall(rest)
        check(Reader(one).response(), body, True)
    assert read == [len(body)]


def test_a_refused_direct_body_is_skipped_and_a_client_leaving_mid_body_gives_its_buffer_back(
    server: tuple[int, list[int]],
) -> None:
    port, read = server
    big = b"r" * 3_200_000
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = Reader(sock)
        sender = send_in_background(sock, post("/v1/refuse", big) + post("/v1/echo", b"behind it"))
        assert reader.response() == (503, b"refused")
        check(reader.response(), b"behind it", False)
        sender.join(10)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(post("/v1/echo", big)[:1_000_000])  # a third of the body, then gone
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while bodyread._pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert bodyread._pending == 0, "the gone client's buffer is no longer counted"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sender = send_in_background(sock, post("/v1/echo", big))
        check(Reader(sock).response(), big, True)
        sender.join(10)
    assert len(read) >= 2


def test_a_client_that_waits_for_100_continue_gets_it_and_its_body_read_directly(
    server: tuple[int, list[int]],
) -> None:
    port, read = server
    body = b"e" * 1_000_000
    head = f"POST /v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sender = send_in_background(sock, body)
        check(Reader(sock).response(), body, True)
        sender.join(10)
    assert read == [len(body)]


def test_a_direct_body_wakes_the_loop_per_megabyte_not_per_segment(
    server: tuple[int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a 3.2 MB body is read into its buffer, the kernel reports the connection readable only once
    ``LOW_WATER`` bytes (or the rest) are in (``SO_RCVLOWAT``): a few arrivals, not one per segment of a
    body sent 32 KiB at a time; then the mark is back to 1 byte and the next request is served."""
    port, read = server
    arrivals: list[int] = []
    readers: list[bodyread.BodyReader] = []
    updated = bodyread.BodyReader.buffer_updated

    def recording(self: bodyread.BodyReader, nbytes: int) -> None:
        arrivals.append(nbytes)
        readers.append(self)
        updated(self, nbytes)

    monkeypatch.setattr(bodyread.BodyReader, "buffer_updated", recording)
    big = bytes(range(256)) * 12_500
    request = post("/v1/echo", big)

    def trickle(sock: socket.socket) -> None:
        for at in range(0, len(request), 32 * 1024):
            sock.sendall(request[at : at + 32 * 1024])
            time.sleep(0.0005)

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = Reader(sock)
        sender = threading.Thread(target=trickle, args=(sock,), daemon=True)
        sender.start()
        check(reader.response(), big, True)
        sender.join(10)
        sock.sendall(post("/v1/echo", b"small"))
        check(reader.response(), b"small", False)
    assert read == [len(big)] and readers[-1].low == 1
    assert 1 <= len(arrivals) <= len(big) // discard.LOW_WATER + 3, arrivals
