"""A real uvicorn server on a thread of the test process, serving a socket the test bound."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serving(server: uvicorn.Server, sock: socket.socket) -> Iterator[None]:
    """Run ``server`` on ``sock`` (bound, as BentoML's worker gets it) until the block ends; it must
    start within 10 s and shut down within 10 s after."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive(), "uvicorn did not shut down"


@contextmanager
def serving_app(app: Any) -> Iterator[int]:
    """``app`` on a real uvicorn (uvloop, httptools, 1 s keep-alive, no lifespan) on a free loopback
    port until the block ends; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, loop="uvloop", http="httptools", log_level="warning", lifespan="off", timeout_keep_alive=1
    )
    with serving(uvicorn.Server(config), sock):
        yield sock.getsockname()[1]


async def body_parts(receive: Any) -> list[Any]:
    """Every ``http.request`` body an ASGI app receives for its request, in order."""
    parts, more = [], True
    while more:
        message = await receive()
        parts.append(message.get("body", b""))
        more = message.get("more_body", False)
    return parts
