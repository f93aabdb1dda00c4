"""Metric writes on an event loop land once per loop iteration, with the same values as direct writes."""

from __future__ import annotations

import asyncio
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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


def test_most_recent_gauges_are_not_wrapped() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("m", "m", registry=registry, multiprocess_mode="mostrecent")
    assert buffered(gauge) is gauge
