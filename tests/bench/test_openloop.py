"""The open-loop generator sends each request on a connection that can send it at once."""

from __future__ import annotations

from typing import Any

from bench.openloop import _Connection, _sendable


class Transport:
    """What ``_sendable`` asks of a transport: how many bytes still wait to be written."""

    def __init__(self, pending: int) -> None:
        self.pending = pending

    def get_write_buffer_size(self) -> int:
        return self.pending


def connection(pending: int) -> _Connection:
    conn = _Connection()
    conn.transport = Transport(pending)  # type: ignore[assignment]
    return conn


def test_the_newest_connection_that_has_sent_everything_is_taken() -> None:
    done_old, busy, done_new = connection(0), connection(0), connection(0)
    busy.transport.pending = 2_000_000  # type: ignore[union-attr]  # the rest of a refused body
    idle: list[Any] = [done_old, done_new, busy]
    assert _sendable(idle) is done_new
    assert idle == [done_old, busy]
    assert _sendable(idle) is done_old
    assert _sendable(idle) is None and idle == [busy]  # a request behind it would leave late


def test_a_connection_the_server_closed_is_never_taken() -> None:
    open_one, closed = connection(0), connection(0)
    closed.closed = True  # closed by the server while idle, deeper in the pool than the trimmed end
    idle: list[Any] = [open_one, closed, connection(1)]
    assert _sendable(idle) is open_one
    assert _sendable(idle) is None


def test_an_empty_pool_has_nothing_to_give() -> None:
    assert _sendable([]) is None
