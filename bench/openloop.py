"""An open-loop HTTP/1.1 load generator: requests leave on a fixed schedule, whatever the server does.

A closed-loop tool (wrk, locust users) waits for each answer before it sends again, so a slow server
gets less load and overload never shows. Here request ``i`` is due at ``start + i / rate``; it goes out
on an idle keep-alive connection that has sent all of its earlier request (a server that refuses a
request before reading its body answers while the rest of that body is still being written), or on a
new one while fewer than ``max_connections`` are open. When every connection is busy the request is
counted as ``unsent`` (the generator, not the server, fell behind: such a run offered less than it
says). Each answer is timed from when it was due, and kept with its status, ``Retry-After`` header and
whether the body passed the caller's check.

Raw asyncio protocols (no HTTP library) keep the generator cheap enough to outrun a server pinned to
fewer cores on the same machine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

Check = Callable[[bytes], bool]


@dataclass
class Answer:
    """One request's outcome; ``status`` 0 with ``error`` set when no HTTP answer came."""

    due: float
    latency_s: float
    status: int
    retry_after: bool = False
    ok: bool = False
    rows: int = 0
    error: str = ""


@dataclass
class Run:
    """Every request of one open-loop run."""

    rate: float
    duration_s: float
    answers: list[Answer] = field(default_factory=list)
    unsent: int = 0
    connections: int = 0


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time; answers carry Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc or 'closed by the server'}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        length = _content_length(head)
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        if not self.waiter.done():
            self.waiter.set_result((int(head[9:12]), head, body))

    async def request(self, payload: bytes) -> tuple[int, bytes, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        try:
            return await self.waiter
        finally:
            self.waiter = None


def _sendable(idle: list[_Connection]) -> _Connection | None:
    """The newest idle connection that has sent all of its earlier request, taken off ``idle``; ``None``
    when there is none (one the server closed while idle is never taken). A server may answer before it has read a request's body (a refusal), so a
    connection can be idle while the rest of that body still waits in its write buffer: a request put
    behind it would leave late, not on schedule."""
    for i in range(len(idle) - 1, -1, -1):
        connection = idle[i]
        transport = connection.transport
        if not connection.closed and transport is not None and not transport.get_write_buffer_size():
            return idle.pop(i)
    return None


def _answer(
    due: float, now: float, status: int, head: bytes, body: bytes, rows: int, check: Check | None
) -> Answer:
    """An HTTP answer as recorded: correct only when 200 and the body passes ``check``."""
    ok = status == 200 and (check is None or check(body))
    return Answer(due, now - due, status, b"\r\nretry-after:" in head, ok, rows)


def _content_length(head: bytes) -> int:
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    stop = head.find(b"\r", at + 17)
    return int(head[at + 17 : stop if stop >= 0 else None])


def http_request(
    path: str, body: bytes, headers: dict[str, str] | None = None, host: str = "127.0.0.1"
) -> bytes:
    """The bytes of a keep-alive ``POST path`` with ``body``."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def open_loop(
    host: str,
    port: int,
    payload: bytes,
    *,
    rate: float,
    duration_s: float,
    rows: int = 1,
    check: Check | None = None,
    max_connections: int = 512,
    timeout_s: float = 10.0,
) -> Run:
    """Send ``payload`` (a whole HTTP request, :func:`http_request`) ``rate`` times a second for
    ``duration_s`` and wait for every answer (at most ``timeout_s`` each)."""
    loop = asyncio.get_running_loop()
    run = Run(rate, duration_s)
    idle: list[_Connection] = []
    tasks: set[asyncio.Task[None]] = set()
    live = 0  # connections open or opening

    def drop(connection: _Connection | None) -> None:
        nonlocal live
        live -= 1
        if connection is not None and connection.transport is not None:
            connection.transport.close()

    async def one(due: float, connection: _Connection | None) -> None:
        try:
            if connection is None:
                _, connection = await loop.create_connection(_Connection, host, port)
                run.connections += 1
            status, head, body = await asyncio.wait_for(connection.request(payload), timeout_s)
        except (TimeoutError, OSError) as exc:
            error = "timeout" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            run.answers.append(Answer(due, loop.time() - due, 0, error=error))
            drop(connection)
            return
        run.answers.append(_answer(due, loop.time(), status, head, body, rows, check))
        if connection.closed or b"\r\nconnection: close" in head:
            drop(connection)
        else:
            idle.append(connection)

    start = loop.time() + 0.05
    total = int(rate * duration_s)
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        while idle and idle[-1].closed:
            drop(idle.pop())
        connection = _sendable(idle)
        if connection is None:
            if live < max_connections:
                live += 1  # one() opens it
            elif idle:  # every idle connection still sends an earlier body: the newest one, late
                connection = idle.pop()
            else:
                run.unsent += 1
                continue
        task = loop.create_task(one(due, connection))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    for connection in idle:
        with contextlib.suppress(Exception):
            assert connection.transport is not None
            connection.transport.close()
    return run


async def closed_loop(
    host: str,
    port: int,
    payload: bytes,
    *,
    connections: int,
    duration_s: float,
    rows: int = 1,
    check: Check | None = None,
) -> Run:
    """The saturation reference: ``connections`` clients, each sending again as soon as answered."""
    loop = asyncio.get_running_loop()
    run = Run(0.0, duration_s)
    stop = loop.time() + duration_s

    async def client() -> None:
        _, connection = await loop.create_connection(_Connection, host, port)
        run.connections += 1
        while loop.time() < stop and not connection.closed:
            due = loop.time()
            status, head, body = await connection.request(payload)
            run.answers.append(_answer(due, loop.time(), status, head, body, rows, check))
        connection.transport.close()  # type: ignore[union-attr]

    await asyncio.gather(*(client() for _ in range(connections)))
    return run


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def summary(run: Run, warmup_s: float = 0.0) -> dict[str, float]:
    """Counts, latencies (ms) and goodput: rows/s of correct answers finished within the run, after its
    first ``warmup_s`` (the steady state, without the ramp of the first answers)."""
    answers = run.answers
    begin = min((a.due for a in answers), default=0.0)
    end = begin + run.duration_s
    ok = [a for a in answers if a.ok]
    rejected = [a for a in answers if a.status == 503]
    in_window = sum(a.rows for a in ok if begin + warmup_s <= a.due + a.latency_s <= end)
    window_s = run.duration_s - warmup_s
    return {
        "offered_per_s": run.rate,
        "sent": len(answers),
        "unsent": run.unsent,
        "ok": len(ok),
        "rejected": len(rejected),
        "rejected_without_retry_after": sum(1 for a in rejected if not a.retry_after),
        "wrong": sum(1 for a in answers if a.status == 200 and not a.ok),
        "other_status": sum(1 for a in answers if a.status not in (0, 200, 503)),
        "timeouts": sum(1 for a in answers if a.error == "timeout"),
        "connection_errors": sum(1 for a in answers if a.error and a.error != "timeout"),
        "ok_p50_ms": quantile([a.latency_s for a in ok], 0.50) * 1000,
        "ok_p99_ms": quantile([a.latency_s for a in ok], 0.99) * 1000,
        "rejected_p50_ms": quantile([a.latency_s for a in rejected], 0.50) * 1000,
        "rejected_p99_ms": quantile([a.latency_s for a in rejected], 0.99) * 1000,
        "goodput_rows_per_s": in_window / window_s if window_s > 0 else 0.0,
        "connections": run.connections,
    }
