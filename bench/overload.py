"""The overload scenario: a server's goodput and latency as open-loop offered load grows past saturation.

For one server and one kind of request: the unloaded latency (one client), the saturation (closed loop:
enough clients to keep it busy), then open-loop bursts at multiples of the saturation rate. Each burst
reports what came back: correct answers, 503s (with or without ``Retry-After``), wrong answers, other
statuses, timeouts and connection errors, the accepted and rejected latencies, and the goodput (rows of
correct answers finished during the burst, per second, after its first ``WARMUP_S``; the saturation
figure is read the same way). After the last burst it measures how long the
server takes to serve again. Used by ``python -m bench overload`` (every server) and by the overload
tests (ours).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.openloop import Check, closed_loop, open_loop, summary

MULTIPLES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
WARMUP_S = 0.5
"""Goodput counts answers finished after the first half second of a run (the steady state)."""


@dataclass(frozen=True)
class Load:
    """What to send: one whole HTTP request, the rows it carries and how to check an answer's body."""

    name: str
    payload: bytes
    rows: int
    check: Check
    saturation_connections: int


async def _recovery_s(host: str, port: int, load: Load, limit_s: float = 5.0) -> float:
    """Seconds from now until a lone client gets a correct answer again (``limit_s`` + 1 if never)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        run = await closed_loop(
            host, port, load.payload, connections=1, duration_s=0.05, rows=load.rows, check=load.check
        )
        if run.answers and all(a.ok for a in run.answers):
            return time.monotonic() - started
    return limit_s + 1


async def measure(
    host: str,
    port: int,
    load: Load,
    multiples: Sequence[float] = MULTIPLES,
    point_s: float = 4.0,
    settle_s: float = 1.0,
    max_connections: int = 512,
) -> dict[str, Any]:
    """Unloaded, saturation, and one open-loop point per multiple of the capacity (the better of the
    saturation and unloaded goodputs), on at most
    ``max_connections`` keep-alive connections (HTTP/1.1: one request at a time on each; a request due
    while all are busy is counted as unsent)."""
    unloaded = summary(
        await closed_loop(
            host, port, load.payload, connections=1, duration_s=1.5, rows=load.rows, check=load.check
        )
    )
    saturation = summary(
        await closed_loop(
            host, port, load.payload, connections=load.saturation_connections, duration_s=4.0, rows=load.rows,
            check=load.check,
        ),
        WARMUP_S,
    )  # fmt: skip
    # A closed loop with more requests in flight than the admission budget holds is rejected in a tight
    # loop (each 503 is resent at once), which can measure less than one lone client gets: the rate the
    # bursts multiply is the better of the two.
    capacity = max(saturation["goodput_rows_per_s"], unloaded["goodput_rows_per_s"])
    rate = capacity / load.rows
    points = []
    for multiple in multiples:
        await asyncio.sleep(settle_s)
        run = await open_loop(
            host, port, load.payload, rate=rate * multiple, duration_s=point_s, rows=load.rows, check=load.check,
            max_connections=max_connections,
        )  # fmt: skip
        point = summary(run, WARMUP_S)
        point["multiple"] = multiple
        point["goodput_ratio"] = point["goodput_rows_per_s"] / capacity
        point["recovery_s"] = await _recovery_s(host, port, load)
        points.append(point)
    return {
        "load": load.name,
        "rows": load.rows,
        "unloaded": unloaded,
        "saturation": saturation,
        "capacity_rows_per_s": capacity,
        "points": points,
    }


def run(host: str, port: int, load: Load, **kw: Any) -> dict[str, Any]:
    """:func:`measure` on an event loop of its own (uvloop, as the servers use)."""
    import uvloop

    return uvloop.run(measure(host, port, load, **kw))
