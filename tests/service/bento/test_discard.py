"""The unread body of a request answered early is skipped, not parsed (service/bento/discard.py), by a real
uvicorn (httptools, uvloop) over a real loopback socket: the next requests on the connection, sent
after the body or pipelined right behind it, are read and answered as before."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from uvicorn.protocols.http import httptools_impl

from service.bento import discard, patches
from tests.service.bento.threaded import body_parts, serving_app


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/refuse``: 503 before reading the body (as admission does); ``/echo``: the body's length and hash."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/refuse":
        body = b"refused"
        status = 503
    else:
        parts = await body_parts(receive)
        data = b"".join(parts)
        body, status = f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode(), 200
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, list[int]]]:
    """uvicorn on a free loopback port with the patch on; yields the port and the sizes skipped."""
    if not patches.ACTIVE["skip_answered_body"]:  # (importing service.service in this process applies it)
        cls = httptools_impl.HttpToolsProtocol
        for name in ("on_body", "on_response_complete"):
            monkeypatch.setattr(cls, name, getattr(cls, name))  # undone after the test
        monkeypatch.setattr(httptools_impl.RequestResponseCycle, "body_seen", 0, raising=False)
        monkeypatch.setitem(patches.ACTIVE, "skip_answered_body", False)
        discard.patch_discard()
    assert patches.ACTIVE["skip_answered_body"]
    skipped: list[int] = []
    init = discard.Skipper.__init__

    def recording_init(self: discard.Skipper, http: Any, remaining: int) -> None:
        skipped.append(remaining)
        init(self, http, remaining)

    monkeypatch.setattr(discard.Skipper, "__init__", recording_init)
    with serving_app(app) as port:
        yield port, skipped


def post(path: str, body: bytes, chunked: bool = False) -> bytes:
    if chunked:
        framed = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        return f"POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + framed
    return f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


class Reader:
    """HTTP/1.1 responses (with Content-Length) off one socket, in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.data = sock, b""

    def response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.data:
            self._more()
        head, self.data = self.data.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        length = next(
            int(v) for k, _, v in (line.partition(": ") for line in lines[1:]) if k == "content-length"
        )
        while len(self.data) < length:
            self._more()
        body, self.data = self.data[:length], self.data[length:]
        return int(lines[0].split()[1]), body

    def _more(self) -> None:
        chunk = self.sock.recv(1 << 16)
        assert chunk, "the server closed the connection"
        self.data += chunk


def echoed(data: bytes) -> bytes:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode()


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    """``sendall`` on a thread: the answer to a refused request comes back while its body is still sent."""
    thread = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
    thread.start()
    return thread


def test_a_refused_body_is_skipped_and_the_next_request_on_the_connection_is_served(
    server: tuple[int, list[int]],
) -> None:
    port, skipped = server
    big, small = bytes(range(256)) * 12_500, b"x" * 100_000  # 3.2 MB refused, then 100 KB echoed
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = Reader(sock)
        sender = send_in_background(sock, post("/refuse", big))
        assert reader.response() == (503, b"refused")
        sender.join(10)
        sock.sendall(post("/echo", small))
        assert reader.response() == (200, echoed(small))
        sock.sendall(post("/refuse", b"y" * 1000) + post("/echo", b"after a short one"))
        assert reader.response() == (503, b"refused")
        assert reader.response() == (200, echoed(b"after a short one"))
    assert len(skipped) == 1 and discard.MIN_SKIP <= skipped[0] <= len(big), skipped  # the short body: parsed


def test_requests_pipelined_behind_a_skipped_body_are_read_from_where_it_ends(
    server: tuple[int, list[int]],
) -> None:
    port, skipped = server
    first, second = b"a" * 200_000, b"second"
    burst = post("/refuse", b"z" * 2_000_000) + post("/echo", first) + post("/echo", second)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = Reader(sock)
        sender = send_in_background(sock, burst)
        assert reader.response() == (503, b"refused")
        assert reader.response() == (200, echoed(first))
        assert reader.response() == (200, echoed(second))
        sender.join(10)
    assert len(skipped) == 1, skipped


def test_a_chunked_body_and_a_client_that_leaves_mid_body_keep_the_server_serving(
    server: tuple[int, list[int]],
) -> None:
    port, skipped = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = Reader(sock)
        sender = send_in_background(
            sock, post("/refuse", b"c" * 500_000, chunked=True) + post("/echo", b"ok")
        )
        assert reader.response() == (503, b"refused")  # no Content-Length: the parser drops it as before
        assert reader.response() == (200, echoed(b"ok"))
        sender.join(10)
    assert skipped == []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(post("/refuse", b"q" * 3_000_000)[:1_000_000])  # a third of the body, then gone
        assert Reader(sock).response() == (503, b"refused")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(post("/echo", b"still here"))
        assert Reader(sock).response() == (200, echoed(b"still here"))
    assert len(skipped) == 1, skipped


def test_a_client_that_never_sends_the_refused_body_is_closed_after_the_keep_alive_timeout(
    server: tuple[int, list[int]],
) -> None:
    """``Expect: 100-continue``: the 503 comes instead of the 100, and the client may never send the
    body; the connection still times out as an idle keep-alive one would (1 s here), not held for ever."""
    port, skipped = server
    head = b"POST /refuse HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\nExpect: 100-continue\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = Reader(sock)
        sock.sendall(head)
        assert reader.response() == (503, b"refused")
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 5
    assert skipped == [3_000_000]


@pytest.mark.parametrize(
    ("headers", "length"),
    [
        ([(b"host", b"t"), (b"content-length", b"70000")], 70000),
        ([(b"content-length", b"70000"), (b"transfer-encoding", b"chunked")], None),  # the parser decides
        ([(b"content-length", b"70000"), (b"content-length", b"70000")], None),
        ([(b"content-length", b"-1")], None),
        ([(b"host", b"t")], None),
    ],
)
def test_only_one_plain_content_length_lets_a_body_be_skipped(
    headers: list[tuple[bytes, bytes]], length: int | None
) -> None:
    assert discard.content_length(headers) == length


def test_discard_drops_exactly_what_it_is_asked_and_leaves_the_next_bytes() -> None:
    """``_discard`` takes no byte past ``most`` (the next request's), and stops at would-block and end."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    with listener, socket.create_connection(listener.getsockname()) as client:
        served, _ = listener.accept()
        with served:
            served.setblocking(False)
            assert discard._discard(served.fileno(), 1000) == 0  # nothing there yet
            client.sendall(b"b" * 300_000 + b"NEXT")
            dropped, deadline = 0, time.monotonic() + 5
            while dropped < 300_000 and time.monotonic() < deadline:
                dropped += discard._discard(served.fileno(), 300_000 - dropped)
            assert dropped == 300_000
            served.setblocking(True)
            assert served.recv(16) == b"NEXT"
            client.close()
            time.sleep(0.05)
            assert discard._discard(served.fileno(), 1000) == 0  # the end: nothing to drop, no error


def test_most_of_a_skipped_body_is_dropped_in_the_kernel_not_copied(
    server: tuple[int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Of a refused 3.2 MB body the event loop copies at most COPIED bytes per arrival; the rest is
    dropped where it lies, and the next request is still read from where the body ends."""
    port, skipped = server
    dropped: list[int] = []
    original = discard._discard

    def recording(fd: int, most: int) -> int:
        dropped.append(original(fd, most))
        return dropped[-1]

    monkeypatch.setattr(discard, "_discard", recording)
    big = b"q" * 3_200_000
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = Reader(sock)
        sender = send_in_background(sock, post("/refuse", big) + post("/echo", b"behind it"))
        assert reader.response() == (503, b"refused")
        assert reader.response() == (200, echoed(b"behind it"))
        sender.join(10)
    assert len(skipped) == 1
    copied = skipped[0] - sum(dropped)  # what the event loop read of the body once it was answered
    assert sum(dropped) > 0 and copied <= discard.COPIED * len(dropped) + discard.COPIED, (copied, dropped)


def test_a_skipped_body_wakes_the_loop_per_megabyte_not_per_segment(
    server: tuple[int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a refused 3.2 MB body is skipped the kernel reports the connection readable only once
    ``LOW_WATER`` bytes (or the rest) are in (``SO_RCVLOWAT``): a few arrivals, not one per ~64 KiB
    segment; once the body is off the connection the mark is back to 1 byte, so the next request's
    head is read as soon as it comes."""
    port, _ = server
    arrivals: list[int] = []
    skippers: list[discard.Skipper] = []
    updated, init = discard.Skipper.buffer_updated, discard.Skipper.__init__

    def recording_init(self: discard.Skipper, http: Any, remaining: int) -> None:
        skippers.append(self)
        init(self, http, remaining)

    def recording(self: discard.Skipper, nbytes: int) -> None:
        arrivals.append(nbytes)
        updated(self, nbytes)

    monkeypatch.setattr(discard.Skipper, "__init__", recording_init)
    monkeypatch.setattr(discard.Skipper, "buffer_updated", recording)
    big = b"w" * 3_200_000
    request = post("/refuse", big)

    def trickle(sock: socket.socket) -> None:  # 32 KiB at a time: each could be an arrival
        for at in range(0, len(request), 32 * 1024):
            sock.sendall(request[at : at + 32 * 1024])
            time.sleep(0.0005)

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = Reader(sock)
        sender = threading.Thread(target=trickle, args=(sock,), daemon=True)
        sender.start()
        assert reader.response() == (503, b"refused")
        sender.join(10)
        assert not sender.is_alive()
        sock.sendall(post("/echo", b"after it"))
        assert reader.response() == (200, echoed(b"after it"))
    (skipper,) = skippers
    assert skipper.remaining <= 0 and skipper.low == 1
    assert 1 <= len(arrivals) <= len(big) // discard.LOW_WATER + 3, arrivals


def test_the_low_water_mark_is_set_on_the_socket_and_reset() -> None:
    """``low_water`` sets ``SO_RCVLOWAT`` to the bytes still to come, at most ``LOW_WATER``, and 1 again."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    with listener, socket.create_connection(listener.getsockname()):
        served, _ = listener.accept()
        with served:

            class Transport:
                def get_extra_info(self, name: str) -> Any:
                    return served if name == "socket" else None

            class Http:
                transport = Transport()

            hand = discard.HandBack(Http())
            lowat = (socket.SOL_SOCKET, socket.SO_RCVLOWAT)
            hand.low_water(5 * discard.LOW_WATER)
            assert served.getsockopt(*lowat) == discard.LOW_WATER
            hand.low_water(300_000)
            assert served.getsockopt(*lowat) == 300_000
            hand.low_water(1)
            assert served.getsockopt(*lowat) == 1 and hand.low == 1
