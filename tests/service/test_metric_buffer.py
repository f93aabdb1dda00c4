"""Metric writes on an event loop land once per loop iteration, with the same values as direct writes."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.mmap_dict import MmapedDict

from service import metric_buffer
from service.metric_buffer import BufferedHistogram, BufferedValue, buffered

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def metrics() -> tuple[CollectorRegistry, Counter, Gauge, Histogram]:
    registry = CollectorRegistry()
    return (
        registry,
        Counter("c", "c", ["k"], registry=registry),
        Gauge("g", "g", ["k"], registry=registry),
        Histogram("h", "h", ["k"], buckets=BUCKETS, registry=registry),
    )


def test_writes_wait_for_the_end_of_the_iteration_and_are_summed() -> None:
    registry, counter, gauge, histogram = metrics()
    c, g, h = buffered(counter.labels("a")), buffered(gauge.labels("a")), buffered(histogram.labels("a"))
    assert isinstance(c, BufferedValue) and isinstance(h, BufferedHistogram)

    async def requests() -> list[float]:
        for amount in (0.0005, 0.005, 0.005, 0.5, 5.0, 1.0):
            c.inc()
            g.inc()
            h.observe(amount)
        g.dec(2)
        before = sample(registry, "c_total", k="a")
        await asyncio.sleep(0)  # one loop iteration
        return [before, sample(registry, "c_total", k="a"), sample(registry, "g", k="a")]

    before, after, in_flight = asyncio.run(requests())
    assert (before, after, in_flight) == (0.0, 6.0, 4.0)
    reference = Histogram("r", "r", buckets=BUCKETS, registry=registry)
    for amount in (0.0005, 0.005, 0.005, 0.5, 5.0, 1.0):
        reference.observe(amount)
    for bound in ("0.001", "0.01", "0.1", "1.0", "+Inf"):
        assert sample(registry, "h_bucket", k="a", le=bound) == sample(registry, "r_bucket", le=bound)
    assert sample(registry, "h_sum", k="a") == sample(registry, "r_sum")
    assert sample(registry, "h_count", k="a") == 6.0


def test_off_a_loop_writes_go_straight_through() -> None:
    registry, counter, _, histogram = metrics()
    c, h = buffered(counter.labels("b")), buffered(histogram.labels("b"))

    def worker() -> None:
        c.inc(3)
        h.observe(0.05)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert sample(registry, "c_total", k="b") == 3.0
    assert sample(registry, "h_count", k="b") == 1.0


def test_nothing_is_lost_when_a_loop_ends_and_another_starts() -> None:
    registry, counter, _, _ = metrics()
    c = buffered(counter.labels("c"))

    async def inc_and_stop() -> None:
        c.inc()  # the loop closes before its next iteration writes this

    asyncio.run(inc_and_stop())

    async def inc_again() -> None:
        c.inc()
        await asyncio.sleep(0)

    asyncio.run(inc_again())
    assert sample(registry, "c_total", k="c") == 2.0


def test_the_running_loop_is_asked_once_not_per_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """``asyncio.get_running_loop`` makes a ``getpid`` system call each time: a loop that is running is
    remembered, so a hundred writes ask once (each asked before)."""
    registry, counter, _, histogram = metrics()
    c, h = buffered(counter.labels("d")), buffered(histogram.labels("d"))
    asked = []
    real = asyncio.get_running_loop

    def counting() -> asyncio.AbstractEventLoop:
        asked.append(1)
        return real()

    async def writes() -> None:
        await asyncio.sleep(0)
        monkeypatch.setattr(metric_buffer.asyncio, "get_running_loop", counting)
        for _ in range(50):
            c.inc()
            h.observe(0.05)
        await asyncio.sleep(0)

    asyncio.run(writes())
    assert len(asked) <= 1
    assert sample(registry, "c_total", k="d") == 50.0 and sample(registry, "h_count", k="d") == 50.0


def test_after_a_loop_has_stopped_writes_go_straight_through() -> None:
    """The remembered loop is trusted only while it runs: once it has stopped, a write off any loop in
    the same thread is written at once."""
    registry, counter, _, _ = metrics()
    c = buffered(counter.labels("e"))

    async def inc() -> None:
        c.inc()
        await asyncio.sleep(0)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(inc())
        c.inc()  # the loop is stopped (not closed): nothing would flush a table now
        assert sample(registry, "c_total", k="e") == 2.0
    finally:
        loop.close()


def test_a_child_forked_on_a_running_loop_writes_at_once() -> None:
    """A child forked while the parent's loop runs inherits a loop object that says it is running but
    never runs there: its writes must not wait in a table for that loop."""
    registry, counter, _, _ = metrics()
    c = buffered(counter.labels("f"))

    async def fork() -> int:
        c.inc()
        await asyncio.sleep(0)  # the parent's loop is remembered now
        pid = os.fork()
        if pid == 0:  # the child: no loop runs here
            try:
                c.inc()
                os._exit(0 if sample(registry, "c_total", k="f") == 2.0 else 3)
            finally:
                os._exit(4)
        return os.waitpid(pid, 0)[1]

    status = asyncio.run(fork())
    assert os.waitstatus_to_exitcode(status) == 0  # 3: the child's write waited for a loop


def test_most_recent_gauges_are_not_wrapped() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("m", "m", registry=registry, multiprocess_mode="mostrecent")
    assert buffered(gauge) is gauge


def mmaped_counters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pid: list[int]) -> list[Any]:
    """Three values of a fresh memory-mapped class (BentoML's workers use these), whose process id
    is ``pid[0]``: files in ``tmp_path``."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    kind = values.MultiProcessValue(process_identifier=lambda: pid[0])
    return [kind("counter", "c", "c_total", ("k",), (str(i),), "help") for i in range(3)]


def on_disk(tmp_path: Path) -> dict[tuple[str, str], float]:
    """Every ``c_total`` sample in the files, per label and file."""
    found = {}
    for path in sorted(tmp_path.glob("counter_*.db")):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            found[(path.name, json.loads(key)[2]["k"])] = value
    return found


def test_memory_mapped_values_are_written_together_as_inc_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = [1000]
    a, b, c = mmaped_counters(tmp_path, monkeypatch, pid)
    bulk = metric_buffer._bulk_of(type(a))
    assert bulk is not None, "prometheus_client's internals changed: every flush now writes value by value"
    metric_buffer._flush({a: 2.0, b: 0.0, c: 1.5})
    metric_buffer._flush({a: 1.0})
    assert on_disk(tmp_path) == {("counter_1000.db", "0"): 3.0, ("counter_1000.db", "1"): 0.0,
                                 ("counter_1000.db", "2"): 1.5}  # fmt: skip
    assert bulk[0].acquire(blocking=False), "the flush released the class's lock"
    bulk[0].release()


def test_a_flush_after_a_fork_writes_to_the_new_process_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = [1000]
    a, b, _ = mmaped_counters(tmp_path, monkeypatch, pid)
    metric_buffer._flush({a: 2.0})
    pid[0] = 1001  # as a forked child sees it: its values start from its own (empty) file
    metric_buffer._flush({b: 1.0, a: 4.0})
    found = on_disk(tmp_path)
    assert found[("counter_1000.db", "0")] == 2.0 and found[("counter_1000.db", "1")] == 0.0
    assert found[("counter_1001.db", "0")] == 4.0 and found[("counter_1001.db", "1")] == 1.0


def test_values_of_other_classes_are_written_by_their_own_inc() -> None:
    registry, counter, gauge, _ = metrics()
    assert metric_buffer._bulk_of(type(counter.labels("d")._value)) is None  # single-process values
    metric_buffer._flush({counter.labels("d")._value: 2.0, gauge.labels("d")._value: -1.0})
    assert sample(registry, "c_total", k="d") == 2.0 and sample(registry, "g", k="d") == -1.0


class _Recorded:
    """A gauge child that remembers what was set (what :class:`LatestTime` writes, and when)."""

    def __init__(self) -> None:
        self.sets: list[float] = []

    def set(self, value: float) -> None:
        self.sets.append(value)


def test_latest_time_writes_a_lone_event_at_once_and_a_burst_once_per_interval() -> None:
    gauge = _Recorded()
    latest = metric_buffer.LatestTime(gauge, interval_s=0.05)

    async def main() -> None:
        latest.note(100.0)
        assert gauge.sets == [100.0]  # a lone event: visible at once
        latest.note(100.01)
        latest.note(100.02)
        assert gauge.sets == [100.0]  # within the interval: one write at its end ...
        await asyncio.sleep(0.1)
        assert gauge.sets == [100.0, 100.02]  # ... with the latest time by then
        latest.note(100.5)
        assert gauge.sets[-1] == 100.5  # the last write is an interval old: at once again
        latest.note(50.0)  # the clock stepped back: written within one interval all the same
        await asyncio.sleep(0.1)
        assert gauge.sets == [100.0, 100.02, 100.5, 50.0]

    asyncio.run(main())
