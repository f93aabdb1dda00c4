"""Admission by expected queue delay, tickets, deadlines and cancellation in the batcher and data plane."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from service.batching import Batcher, Ticket
from service.dataplane import DataPlane, InferenceRequest
from service.errors import ClientGone, Overloaded, TimedOut
from service.models.registry import ModelRegistry
from service.settings import Settings
from tests.service.modelfactory import write_scale_version
from tests.service.test_batching import RecordingRuntime


def make(runtime: RecordingRuntime, delay_ms: float, drops: list[str] | None = None, **kw: float) -> Batcher:
    return Batcher(
        runtime,
        name="t",
        max_batch_size=int(kw.get("max_batch", 4)),
        max_wait_ms=kw.get("wait_ms", 0.0),
        max_queue_rows=int(kw.get("max_queue", 10_000)),
        max_queue_delay_ms=delay_ms,
        on_drop=drops.append if drops is not None else None,
    )


def one(value: float = 1.0, rows: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, 2), value, np.float32)}


def test_seconds_per_row_is_measured_and_a_queue_over_budget_is_refused_at_once() -> None:
    runtime = RecordingRuntime(delay=0.01)  # 10 ms per batch of up to 4 rows: ~2.5 ms per row

    async def main() -> tuple[float, Overloaded, float, int]:
        batcher = make(runtime, delay_ms=60)
        await asyncio.gather(*(batcher.submit(one(), 1) for _ in range(8)))
        per_row = batcher.seconds_per_row
        queued = [asyncio.ensure_future(batcher.submit(one(), 1)) for _ in range(40)]
        await asyncio.sleep(0)  # admitted while the queue was short; the batcher now holds them
        started = time.perf_counter()
        with pytest.raises(Overloaded) as caught:
            await batcher.submit(one(), 1)
        refused_in = time.perf_counter() - started
        done = await asyncio.gather(*queued, return_exceptions=True)
        await batcher.close()
        return per_row, caught.value, refused_in, sum(not isinstance(d, BaseException) for d in done)

    per_row, error, refused_in, served = asyncio.run(main())
    assert 0.0015 < per_row < 0.02, per_row  # ~2.5 ms: 10 ms per full batch of 4 (scheduling adds some)
    assert error.reason == "queue_delay" and error.http_status == 503
    assert "over this model's budget of 60 ms" in error.message
    assert int(error.headers()["Retry-After"]) >= 1
    assert refused_in < 0.005, "the refusal must not wait for the queue"
    assert served > 0  # requests admitted earlier were all served, refused ones never queued


def test_retry_after_grows_with_the_backlog() -> None:
    runtime = RecordingRuntime(delay=0.0)

    async def main() -> int:
        batcher = make(runtime, delay_ms=100)
        await batcher.submit(one(), 1)
        batcher._cost_s, batcher._cost_rows = 1.0, 10.0  # measured: 0.1 s per row
        batcher._pending_rows = 50  # 5 s of work queued
        try:
            batcher.admit()
        except Overloaded as exc:
            return exc.retry_after_s
        finally:
            batcher._pending_rows = 0
            await batcher.close()
        raise AssertionError("not refused")

    assert asyncio.run(main()) == 5  # ceil(5.0 s - 0.1 s budget)


def test_the_admission_threshold_drops_while_requests_wait_over_the_budget_and_comes_back() -> None:
    """Admitted requests that waited longer than the budget (here: 150 ms between admission and the
    queue, against a budget of 100 ms) lower the expected wait the batcher admits at, so a request it
    expects to wait 70 ms is refused, with a message naming the lowered threshold and the budget; on-time
    requests bring the threshold back up to the budget, never above it and never under a quarter of it."""
    runtime = RecordingRuntime(delay=0.0)

    async def main() -> tuple[float, float, Overloaded, float, float]:
        batcher = make(runtime, delay_ms=100)
        await batcher.submit(one(), 1)
        at_start = batcher.admit_at_s
        for _ in range(10):
            await batcher.submit(one(), 1, admitted_s=0.15)
        lowered = batcher.admit_at_s
        batcher._cost_s, batcher._cost_rows = 0.01, 1.0  # measured: 10 ms per row
        batcher._pending_rows = 7  # 70 ms queued: within the budget, over the lowered threshold
        with pytest.raises(Overloaded) as caught:
            batcher.admit()
        batcher._pending_rows = 0
        for _ in range(200):
            await batcher.submit(one(), 1, admitted_s=0.15)
        floor = batcher.admit_at_s
        for _ in range(5_000):
            await batcher.submit(one(), 1)
        back = batcher.admit_at_s
        await batcher.close()
        return at_start, lowered, caught.value, floor, back

    at_start, lowered, error, floor, back = asyncio.run(main())
    assert at_start == pytest.approx(0.1)
    assert lowered < 0.07, lowered  # ten waits over budget: about 5 ms lower each
    assert error.reason == "queue_delay" and error.http_status == 503
    assert "expected queue wait 70 ms" in error.message and "budget of 100 ms" in error.message, error.message
    assert f"over {lowered * 1000:.0f} ms" in error.message, error.message
    assert floor == pytest.approx(0.025)  # a quarter of the budget at the lowest
    assert back == pytest.approx(0.1)  # 5,000 on-time waits: back at the budget, not over it


def test_about_one_admitted_request_in_a_hundred_may_wait_over_the_budget() -> None:
    """The threshold is a quantile tracker: when 1 % of the waits are over the budget it stays where it
    is (about), when 5 % are it keeps going down."""
    runtime = RecordingRuntime(delay=0.0)

    async def threshold_after(over_every: int) -> float:
        batcher = make(runtime, delay_ms=100)
        await batcher.submit(one(), 1)
        for i in range(2_000):
            await batcher.submit(one(), 1, admitted_s=0.15 if i % over_every == 0 else 0.0)
        await batcher.close()
        return batcher.admit_at_s

    assert asyncio.run(threshold_after(100)) > 0.09
    assert asyncio.run(threshold_after(20)) < 0.03  # at its floor of a quarter of the budget, about


def test_tickets_count_as_queued_until_released_so_a_burst_cannot_all_pass() -> None:
    runtime = RecordingRuntime(delay=0.0)

    async def main() -> tuple[int, int]:
        batcher = make(runtime, delay_ms=50)
        await batcher.submit(one(rows=4), 4)
        batcher._cost_s, batcher._cost_rows = 0.04, 4.0  # 10 ms per row; average request: ~1 row
        tickets = []
        with pytest.raises(Overloaded):
            for _ in range(100):
                tickets.append(Ticket(batcher))
        admitted = len(tickets)
        for ticket in tickets:
            ticket.release()
            ticket.release()  # twice is harmless
        Ticket(batcher).release()  # room again once released
        left = batcher.budget.reserved
        await batcher.close()
        return admitted, left

    admitted, left = asyncio.run(main())
    assert 3 <= admitted <= 20, admitted  # 50 ms budget / (10 ms x rows per request)
    assert left == 0


def test_queued_work_past_its_deadline_is_dropped_unrun_and_counted() -> None:
    runtime = RecordingRuntime(delay=0.0)
    drops: list[str] = []

    async def main() -> BaseException | None:
        batcher = make(runtime, delay_ms=10_000, drops=drops, wait_ms=150, max_batch=8)
        loop = asyncio.get_running_loop()
        late = asyncio.ensure_future(batcher.submit(one(7.0), 1, deadline=loop.time() + 0.05))
        on_time = asyncio.ensure_future(batcher.submit(one(1.0), 1))
        result = await asyncio.gather(late, on_time, return_exceptions=True)
        await batcher.close()
        return result[0] if isinstance(result[0], BaseException) else None

    error = asyncio.run(main())
    assert isinstance(error, TimedOut)
    assert drops == ["deadline"]
    assert runtime.sizes == [1]  # only the request without a deadline ran


def test_a_cancelled_caller_is_dropped_unrun_and_a_split_request_counts_once() -> None:
    runtime = RecordingRuntime(delay=0.05)
    drops: list[str] = []

    async def main() -> None:
        batcher = make(runtime, delay_ms=10_000, drops=drops, max_batch=4)
        ahead = asyncio.ensure_future(batcher.submit(one(), 1))  # keeps the runtime busy for 50 ms
        await asyncio.sleep(0.005)
        gone = asyncio.ensure_future(batcher.submit(one(rows=10), 10))  # three chunks, queued
        await asyncio.sleep(0.01)
        gone.cancel()
        stays = await batcher.submit(one(2.0), 1)
        np.testing.assert_array_equal(stays[0]["y"], one(4.0)["x"])
        await ahead
        await batcher.close()

    asyncio.run(main())
    assert drops == ["cancelled"]
    assert runtime.sizes == [1, 1]


def plane(tmp_path: Path, **settings: object) -> DataPlane:
    write_scale_version(tmp_path, "m", 1, 2.0)
    (tmp_path / "serving.yaml").write_text("models:\n  m: {max_wait_ms: 300, max_batch_size: 8}\n")
    return DataPlane(ModelRegistry(Settings(repository=tmp_path, poll_interval_s=0, **settings)))


def test_a_request_deadline_fails_it_in_time_and_it_never_runs(tmp_path: Path) -> None:
    dataplane = plane(tmp_path)

    async def main() -> tuple[float, int]:
        await dataplane.registry.start()
        loop = asyncio.get_running_loop()
        batcher = dataplane.registry.resolve("m").batcher
        assert batcher is not None
        started = time.perf_counter()
        request = InferenceRequest(
            "m", {None: np.ones((1, 4), np.float32)}, "test", deadline=loop.time() + 0.05
        )
        with pytest.raises(TimedOut):
            await dataplane.infer(request)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.4)  # past max_wait: the batch would have run by now
        rows_run = int(batcher._cost_rows)
        await dataplane.registry.close()
        return elapsed, rows_run

    elapsed, rows_run = asyncio.run(main())
    assert 0.045 <= elapsed < 0.25, elapsed
    assert rows_run == 0, "the timed-out request reached the runtime"


def test_a_watch_that_sees_the_client_go_cancels_the_queued_request(tmp_path: Path) -> None:
    dataplane = plane(tmp_path)

    async def main() -> int:
        await dataplane.registry.start()
        batcher = dataplane.registry.resolve("m").batcher
        assert batcher is not None
        ahead = asyncio.ensure_future(
            dataplane.infer(InferenceRequest("m", {None: np.ones((1, 4), np.float32)}, "t"))
        )
        await asyncio.sleep(0.01)  # something is queued: the next request is watched

        async def watch(work: object) -> object:
            task = asyncio.ensure_future(work)  # type: ignore[arg-type]
            await asyncio.sleep(0.05)  # the client leaves while queued
            task.cancel()
            raise ClientGone("gone")

        with pytest.raises(ClientGone):
            await dataplane.infer(
                InferenceRequest("m", {None: np.ones((1, 4), np.float32)}, "t", watch=watch)
            )
        await ahead
        rows = round(batcher._cost_rows)
        await dataplane.registry.close()
        return rows

    assert asyncio.run(main()) == 1  # only the request ahead ran


def test_the_in_flight_cap_refuses_the_next_request_with_reason_inflight(tmp_path: Path) -> None:
    dataplane = plane(tmp_path, max_inflight=2)
    dataplane.enter("t")
    dataplane.enter("t")
    with pytest.raises(Overloaded) as caught:
        dataplane.enter("t")
    assert caught.value.reason == "inflight" and "limit 2" in caught.value.message
    dataplane.leave()
    dataplane.enter("t")  # room again
    assert dataplane.inflight == 2


def test_readiness_is_off_while_draining(tmp_path: Path) -> None:
    dataplane = plane(tmp_path)

    async def main() -> tuple[bool, bool]:
        await dataplane.registry.start()
        before = dataplane.ready()
        dataplane.draining = True
        after = dataplane.ready()
        await dataplane.registry.close()
        return before, after

    assert asyncio.run(main()) == (True, False)


def threshold_gauge() -> float | None:
    labels = {"model": "m", "version": "1"}
    return REGISTRY.get_sample_value("serving_admission_threshold_seconds", labels)


def test_the_time_a_request_spends_admitted_before_it_queues_counts_in_its_wait(tmp_path: Path) -> None:
    """Through the data plane: a request admitted (its ticket issued) 60 ms before its rows queue, with a
    budget of 50 ms, waited over the budget, so the version's admission threshold goes down; one that
    queues at once does not move it down. ``serving_admission_threshold_seconds`` follows it."""
    dataplane = plane(tmp_path, max_queue_delay_ms=50.0)
    (tmp_path / "serving.yaml").write_text("models:\n  m: {max_batch_size: 8}\n")  # no wait for company

    async def main() -> tuple[float, float, float]:
        await dataplane.registry.start()
        batcher = dataplane.registry.resolve("m").batcher
        assert batcher is not None and batcher.max_wait_s == 0
        at_start = batcher.admit_at_s
        assert threshold_gauge() == pytest.approx(0.05)  # the budget, from the load on
        with dataplane.admitted("test", "m") as ticket:
            await dataplane.infer(
                InferenceRequest("m", {None: np.ones((1, 4), np.float32)}, "t", ticket=ticket)
            )
        after_prompt = batcher.admit_at_s
        with dataplane.admitted("test", "m") as ticket:
            await asyncio.sleep(0.06)  # reading and decoding a slow body
            await dataplane.infer(
                InferenceRequest("m", {None: np.ones((1, 4), np.float32)}, "t", ticket=ticket)
            )
        after_slow = batcher.admit_at_s
        assert threshold_gauge() == after_slow  # written after the batch that moved it
        await dataplane.registry.close()
        return at_start, after_prompt, after_slow

    at_start, after_prompt, after_slow = asyncio.run(main())
    assert at_start == pytest.approx(0.05) and after_prompt == pytest.approx(0.05)
    assert after_slow < 0.048, after_slow  # down by about 5 % of the budget
