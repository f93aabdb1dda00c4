"""A real uvicorn server on a thread of the test process, serving a socket the test bound."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

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
