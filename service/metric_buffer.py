"""Metric writes of the event loop, coalesced once per loop iteration.

In BentoML's workers every Prometheus increment is a write to a shared memory-mapped file (a lock, a
pid check and a struct pack: about 2.5 µs). An answered request touches sixteen values (in-flight,
latency, queue and compute histograms, the success counter, body sizes, the HTTP pair), so at a few
thousand requests a second that was a tenth of a worker's time. The series of the hot path are bound
through :func:`buffered`: an increment made on an event loop is added to a per-thread table, and the
table is written out by a callback the loop runs right after the callbacks already ready, once for
every request that finished in that iteration (a batch of 64 answers makes one write per value, not 64).

Nothing waits longer than the loop iteration it happened in: a scrape (which is another request, read
in a later iteration) sees every answer already sent. Off a loop (runtime threads, the thread-pool
gRPC paths) and for metric types this does not know, writes go straight through.

A flush of memory-mapped values takes their class's lock and checks for a fork once for the whole
table, not once per value (``inc`` does both every time: 18 values, one request's, cost 21-25 µs one
by one and 7-9 µs together); values of any other class are written with their own ``inc``.

:class:`LatestTime` does the same for a gauge of when something last happened: one write per interval.
"""

from __future__ import annotations

import asyncio
import os
import threading
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

_local = threading.local()
Bulk = tuple[Any, Callable[[Any], None]]
"""A multiprocess value class's lock and its fork check (run on any of its values)."""
_bulk: dict[type, Bulk | None] = {}


def add(value: Any, amount: float) -> None:
    """``value.inc(amount)`` at the end of this loop iteration (at once off a loop)."""
    table = _table()
    if table is None:
        value.inc(amount)
    else:
        table[value] = table.get(value, 0.0) + amount


def _table() -> dict[Any, float] | None:
    """This thread's table of pending increments, written out at the end of the running loop's
    iteration; ``None`` off a loop.

    The loop this thread last ran is kept with the table and trusted while it is running:
    ``asyncio.get_running_loop()`` makes a ``getpid`` system call each time (its fork check; ~0.3 µs on
    a VM, ten calls a request), so it is asked only when that loop has stopped or for a thread's first
    use. A loop runs in one thread at a time, and a forked child forgets what its parent kept
    (:func:`_forget`), so a running loop kept here is this thread's."""
    loop = getattr(_local, "loop", None)
    if loop is None or not loop.is_running():
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        pending = getattr(_local, "pending", None)
        if pending is None or _local.loop is not loop:  # first use in this thread, or a new loop
            if pending:
                _flush(pending)  # what a loop that has stopped left behind
            _local.pending = {}
            _local.loop = loop
    pending = _local.pending
    if not pending:
        loop.call_soon(_flush, pending)
    return pending


def _forget() -> None:
    """In a forked child: the parent's loop and table are not this process's (its increments would
    otherwise wait for a loop that never runs here)."""
    global _local
    _local = threading.local()


os.register_at_fork(after_in_child=_forget)


def _flush(pending: dict[Any, float]) -> None:
    items = [(value, amount) for value, amount in pending.items() if amount]  # an inc and its dec: nothing
    pending.clear()
    if not items:
        return
    kind = type(items[0][0])
    bulk = _bulk[kind] if kind in _bulk else _bulk.setdefault(kind, _bulk_of(kind))
    others = items  # what is written value by value, with its own inc
    if bulk is not None:
        lock, check_for_fork = bulk
        others = []
        with lock:
            check_for_fork(items[0][0])  # after a fork, every value of the class re-opens its file first
            for value, amount in items:
                if type(value) is not kind:
                    others.append((value, amount))
                    continue
                value._value += amount  # what MmapedValue.inc does under the lock
                value._timestamp = 0.0
                value._file.write_value(value._key, value._value, 0.0)
    for value, amount in others:
        value.inc(amount)


def _bulk_of(kind: type) -> Bulk | None:
    """The lock and fork check of prometheus_client's memory-mapped value class ``kind`` (the class
    ``MultiProcessValue()`` makes), or ``None`` for any other class or a library without these internals."""
    inc = getattr(kind, "inc", None)
    check = getattr(kind, "_MmapedValue__check_for_pid_change", None)
    code, cells = getattr(inc, "__code__", None), getattr(inc, "__closure__", None)
    if not getattr(kind, "_multiprocess", False) or check is None or code is None or cells is None:
        return None
    cell = dict(zip(code.co_freevars, cells, strict=True)).get("lock")
    lock = None if cell is None else cell.cell_contents
    if not (hasattr(lock, "__enter__") and hasattr(lock, "__exit__")):
        return None
    return lock, check


class BufferedValue:
    """A bound Counter or Gauge child whose ``inc``/``dec`` go through :func:`add`."""

    __slots__ = ("_value",)

    def __init__(self, child: Any) -> None:
        self._value = child._value

    def inc(self, amount: float = 1.0) -> None:
        add(self._value, amount)

    def dec(self, amount: float = 1.0) -> None:
        add(self._value, -amount)


class BufferedHistogram:
    """A bound Histogram child whose ``observe`` goes through :func:`add` (no exemplars)."""

    __slots__ = ("_bounds", "_buckets", "_sum")

    def __init__(self, child: Any) -> None:
        self._sum = child._sum
        self._buckets = list(child._buckets)
        self._bounds = list(child._upper_bounds)

    def observe(self, amount: float) -> None:
        index = bisect_left(self._bounds, amount)  # the first bucket whose bound is >= amount
        bucket = self._buckets[index] if index < len(self._buckets) else None
        table = _table()
        if table is None:
            self._sum.inc(amount)
            if bucket is not None:
                bucket.inc(1.0)
            return
        table[self._sum] = table.get(self._sum, 0.0) + amount
        if bucket is not None:
            table[bucket] = table.get(bucket, 0.0) + 1.0


def buffered(child: Any) -> Any:
    """``child`` (a bound series) with its writes coalesced per loop iteration; ``child`` itself for
    what this does not know (a Gauge in ``mostrecent`` mode, a Summary, a library version without
    these internals)."""
    if hasattr(child, "_upper_bounds") and hasattr(child, "_sum") and hasattr(child, "_buckets"):
        return BufferedHistogram(child)
    known = type(child).__name__ in ("Counter", "Gauge") and hasattr(child, "_value")
    if known and not getattr(child, "_is_most_recent", False):
        return BufferedValue(child)
    return child


class LatestTime:
    """A gauge of when something last happened (Unix time), written at most once per ``interval_s``:
    at once when the previous write is older than that (a lone event is visible immediately), else
    once at the end of the interval with the latest time by then. A write to the shared metric file
    costs ~2 µs; at thousands of events a second this is one write per interval, and the value is never
    more than ``interval_s`` behind. :meth:`note` runs on an event loop."""

    __slots__ = ("_due", "_gauge", "_interval_s", "_latest", "_written_at")

    def __init__(self, gauge: Any, interval_s: float) -> None:
        self._gauge = gauge
        self._interval_s = interval_s
        self._latest = 0.0
        self._written_at = -interval_s
        self._due = False

    def note(self, now: float) -> None:
        """Something happened at ``now`` (``time.time()``)."""
        self._latest = now
        if self._due:
            return
        wait_s = self._written_at + self._interval_s - now
        if wait_s <= 0:
            self._write()
        else:  # (at most one interval, should the clock have stepped back)
            self._due = True
            asyncio.get_running_loop().call_later(min(wait_s, self._interval_s), self._write)

    def _write(self) -> None:
        self._due = False
        self._written_at = self._latest
        self._gauge.set(self._latest)
