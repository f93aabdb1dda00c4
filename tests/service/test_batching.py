"""The batcher merges concurrent requests, splits big ones, rejects when full, and fails cleanly."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from service.batching import Batcher
from service.errors import Overloaded


class RecordingRuntime:
    """Doubles its input and records the batch sizes it saw (a slow model: 5 ms per call)."""

    def __init__(self, delay: float = 0.005) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self.threads: set[str] = set()
        self.last_thread = ""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.sizes.append(len(batch["x"]))
        self.last_thread = threading.current_thread().name
        self.threads.add(self.last_thread)
        time.sleep(self.delay)
        return {"y": batch["x"] * 2}


def make(
    runtime: RecordingRuntime, max_batch: int = 8, max_queue: int = 1000, wait_ms: float = 0.0
) -> Batcher:
    return Batcher(runtime, name="t", max_batch_size=max_batch, max_wait_ms=wait_ms, max_queue_rows=max_queue)


def test_concurrent_requests_are_merged_and_answers_go_back_to_their_senders() -> None:
    runtime = RecordingRuntime()

    async def main() -> list[np.ndarray]:
        batcher = make(runtime)
        outs = await asyncio.gather(
            *(batcher.submit({"x": np.full((1, 3), i, np.float32)}, 1) for i in range(40))
        )
        await batcher.close()
        return [o["y"] for o, _ in outs]

    results = asyncio.run(main())
    for i, y in enumerate(results):
        np.testing.assert_array_equal(y, np.full((1, 3), 2 * i, np.float32))
    assert max(runtime.sizes) > 1, runtime.sizes
    assert max(runtime.sizes) <= 8
    assert sum(runtime.sizes) == 40
    assert len(runtime.threads) == 1 and next(iter(runtime.threads)).startswith("runtime-")


def test_a_request_bigger_than_the_max_batch_is_split_and_reassembled() -> None:
    runtime = RecordingRuntime(delay=0)

    async def main() -> np.ndarray:
        batcher = make(runtime, max_batch=4)
        out, timing = await batcher.submit({"x": np.arange(10, dtype=np.float32).reshape(10, 1)}, 10)
        await batcher.close()
        assert timing.batch_rows <= 4
        return out["y"]

    y = asyncio.run(main())
    np.testing.assert_array_equal(y[:, 0], np.arange(10) * 2)
    assert runtime.sizes and max(runtime.sizes) <= 4 and sum(runtime.sizes) == 10


def test_full_queue_rejects_with_overloaded_and_keeps_serving() -> None:
    runtime = RecordingRuntime(delay=0.02)

    async def main() -> tuple[int, int]:
        batcher = make(runtime, max_batch=1, max_queue=3)
        results = await asyncio.gather(
            *(batcher.submit({"x": np.ones((1, 1), np.float32)}, 1) for _ in range(10)),
            return_exceptions=True,
        )
        rejected = sum(isinstance(r, Overloaded) for r in results)
        ok = sum(not isinstance(r, BaseException) for r in results)
        again, _ = await batcher.submit({"x": np.ones((1, 1), np.float32)}, 1)
        assert again["y"][0, 0] == 2
        await batcher.close()
        return ok, rejected

    ok, rejected = asyncio.run(main())
    assert ok == 3 and rejected == 7


def test_runtime_failure_reaches_every_request_of_the_batch_and_the_next_batch_runs() -> None:
    calls = {"n": 0}

    def flaky(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return {"y": batch["x"]}

    async def main() -> None:
        batcher = Batcher(flaky, name="f", max_batch_size=8, max_wait_ms=0, max_queue_rows=100)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit({"x": np.ones((1, 1), np.float32)}, 1)
        out, _ = await batcher.submit({"x": np.ones((2, 1), np.float32)}, 2)
        assert out["y"].shape == (2, 1)
        await batcher.close()

    asyncio.run(main())


def test_max_wait_gathers_company_for_a_lone_burst() -> None:
    runtime = RecordingRuntime(delay=0)

    async def main() -> None:
        batcher = make(runtime, max_batch=64, wait_ms=50)
        first = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 1), np.float32)}, 1))
        await asyncio.sleep(0.005)
        second = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 1), np.float32)}, 1))
        await asyncio.gather(first, second)
        await batcher.close()

    asyncio.run(main())
    assert runtime.sizes == [2]


def test_requests_with_different_shapes_are_never_merged_and_the_loop_survives() -> None:
    sizes: list[tuple[int, ...]] = []

    def run(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sizes.append(batch["x"].shape)
        time.sleep(0.002)
        return {"y": batch["x"].sum(axis=1, keepdims=True)}

    async def main() -> list[float]:
        batcher = Batcher(run, name="d", max_batch_size=64, max_wait_ms=5, max_queue_rows=1000)
        outs = await asyncio.gather(
            *(batcher.submit({"x": np.ones((1, 2 + i % 3), np.float32)}, 1) for i in range(30))
        )
        await batcher.close()
        return [float(o["y"][0, 0]) for o, _ in outs]

    assert asyncio.run(main()) == [2.0 + i % 3 for i in range(30)]
    assert {s[1] for s in sizes} == {2, 3, 4} and max(s[0] for s in sizes) > 1


def test_runtime_returning_wrong_row_count_fails_the_batch_not_the_loop() -> None:
    calls = {"n": 0}

    def run(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls["n"] += 1
        return {"y": batch["x"][:1] if calls["n"] == 1 else batch["x"]}

    async def main() -> None:
        batcher = Batcher(run, name="w", max_batch_size=8, max_wait_ms=0, max_queue_rows=100)
        with pytest.raises(RuntimeError, match="returned"):
            await batcher.submit({"x": np.ones((3, 1), np.float32)}, 3)
        out, _ = await batcher.submit({"x": np.ones((3, 1), np.float32)}, 3)
        assert out["y"].shape == (3, 1)
        await batcher.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("inline_us", "delay", "on_loop"),
    [(300, 0.0, True), (300, 0.002, False), (0, 0.0, False)],
    ids=["short-calls-inline", "long-calls-on-the-thread", "inline-off"],
)
def test_short_batches_run_on_the_event_loop_once_measured(
    inline_us: float, delay: float, on_loop: bool
) -> None:
    """With ``inline_s``, a batch whose call is expected (from the calls before it) to fit runs on the event
    loop's own thread; the first batch, longer ones and ``inline_s=0`` go to the runtime thread. (The
    first calls on the thread include its start and the hand-offs, so the estimate takes a few batches
    to come under 300 µs.)"""
    runtime = RecordingRuntime(delay=delay)
    batcher = Batcher(runtime, name="t", max_batch_size=8, max_wait_ms=0, max_queue_rows=100,
                      inline_s=inline_us / 1e6)  # fmt: skip

    async def main() -> list[str]:
        seen = []
        for i in range(12):
            x = np.full((1, 3), float(i), np.float32)
            outputs, _ = await batcher.submit({"x": x}, 1)
            np.testing.assert_array_equal(outputs["y"], x * 2)
            seen.append(runtime.last_thread)
        await batcher.close()
        return seen

    loop_thread = threading.current_thread().name  # asyncio.run runs the loop on this thread
    seen = asyncio.run(main())
    assert seen[0] != loop_thread  # nothing measured yet: the runtime thread
    assert all((name == loop_thread) is on_loop for name in seen[-4:]), seen
