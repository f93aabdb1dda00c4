"""Adaptive batching outside the runtime.

One :class:`Batcher` per served model version. Requests queue up; a single loop takes as many queued
rows as fit into ``max_batch_size``, merges them into one batch, runs the runtime on a dedicated
thread (the event loop keeps accepting requests meanwhile) and splits the result back; a short call
runs on the event loop instead (:class:`~service.placement.Placement` chooses). While the
runtime is busy, new requests accumulate, so batches grow with load by themselves ("natural"
batching) and a lone client never waits for company unless ``max_wait_ms`` asks for it. A request
with more rows than ``max_batch_size`` is split into chunks and reassembled.

Why not BentoML's ``batchable=True`` dispatcher: measured here, it answered a lone client in 25-35 ms
(it waits for company) and rejected with 503 under 16 clients with a tight latency budget; the CNN runs
in 0.06 ms, so waiting is never worth it by default.

Admission: the batcher measures its seconds per row (a decaying average over recent batches, weighted
by rows; back to back, a batch costs the time since the previous one ended, so the event loop's share
of the CPU counts too), so it knows the wait a new request would have behind the queued rows, and its
:class:`~service.queue_budget.QueueBudget` decides (rejects at once what would wait over
``max_queue_delay_ms``, with a threshold that follows the measured waits). Queued requests whose
deadline has passed, or whose caller has gone (the awaiting task was cancelled), are dropped before
they run and reported to ``on_drop``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter

import numpy as np

from service.errors import TimedOut, Unavailable
from service.placement import Batch, Placement
from service.queue_budget import DECAY, QueueBudget

BatchObserver = Callable[[int], None]
DropObserver = Callable[[str], None]


@dataclass(frozen=True)
class Timing:
    """Where one request's time went inside the batcher."""

    queue_s: float
    compute_s: float
    batch_rows: int


def _signature(batch: Batch) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    """What must agree for two requests to share a batch: per input, the non-batch shape and dtype."""
    return tuple((name, a.shape[1:], a.dtype.str) for name, a in sorted(batch.items()))


@dataclass
class _Item:
    inputs: Batch
    rows: int
    future: asyncio.Future[tuple[Batch, Timing]]
    deadline: float | None = None
    """Event-loop time after which the answer is of no use (``None``: no deadline)."""
    counted: bool = True
    """Whether dropping this item counts a request (the later chunks of a split request do not)."""
    admitted_s: float = 0.0
    """How long before it was queued the request was admitted (reading and decoding it)."""
    enqueued: float = field(default_factory=perf_counter)
    signature: tuple[tuple[str, tuple[int, ...], str], ...] = ()

    def __post_init__(self) -> None:
        self.signature = _signature(self.inputs)


def _concat(parts: list[Batch]) -> Batch:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _slice(batch: Batch, start: int, stop: int) -> Batch:
    return {name: value[start:stop] for name, value in batch.items()}


class Ticket:
    """A request admitted into a batcher's budget before its body is read: it counts as queued (with
    the average rows per request) until :meth:`release`, so a burst cannot all pass admission at once
    and then pile up reading bodies. Releasing twice is harmless; as a context manager, the block's
    end releases it."""

    def __init__(self, batcher: Batcher) -> None:
        batcher.reserve()
        self._batcher: Batcher | None = batcher
        self._issued = perf_counter()

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self, queued: bool = False) -> float:
        """Give the reservation back; ``queued``: the request now joins the queue, so the time since
        admission (reading and decoding it) is what the next requests should expect too. Returns that
        time (pass it to :meth:`Batcher.submit`)."""
        held = perf_counter() - self._issued
        if self._batcher is not None:
            self._batcher.unreserve(held if queued else None)
            self._batcher = None
        return held


class Batcher:
    """Merges concurrent requests for one model version into runtime calls."""

    def __init__(
        self,
        run: Callable[[Batch], Batch],
        *,
        name: str,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue_rows: int,
        max_queue_delay_ms: float = 500.0,
        on_batch: BatchObserver | None = None,
        on_drop: DropObserver | None = None,
        inline_s: float = 0.0,
        cpu_timed: bool = False,
    ) -> None:
        self.placement = Placement(run, name=name, inline_s=inline_s, cpu_timed=cpu_timed)
        """Where each batch's call runs (``inline_s``, ``cpu_timed``: see :class:`Placement`)."""
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.budget = QueueBudget(max_queue_delay_ms, max_queue_rows, self.max_wait_s)
        self._on_batch = on_batch
        self._on_drop = on_drop
        self._pending: deque[_Item] = deque()
        self._pending_rows = 0
        self._running_rows = 0
        self._cost_s = 0.0  # decayed sums: compute seconds and rows of recent batches
        self._cost_rows = 0.0
        self._busy_since: float | None = None  # when the last batch ended, while work kept coming
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def queued_rows(self) -> int:
        return self._pending_rows

    @property
    def busy(self) -> bool:
        """Whether a request queued now would wait: rows are queued or a batch is running."""
        return bool(self._pending_rows or self._running_rows)

    def may_wait(self, seconds: float) -> bool:
        """Whether a request queued now may wait about ``seconds`` or more (expected delay or max_wait)."""
        return self.max_wait_s >= seconds or self.expected_delay_s() >= seconds

    @property
    def seconds_per_row(self) -> float:
        """Measured runtime seconds per row over recent batches (0 before the first batch)."""
        return self._cost_s / self._cost_rows if self._cost_rows else 0.0

    @property
    def admit_at_s(self) -> float:
        """The expected wait above which a request is rejected now (:class:`QueueBudget`)."""
        return self.budget.admit_at_s

    def expected_delay_s(self) -> float:
        """How long a request admitted now would wait before its batch starts (:class:`QueueBudget`)."""
        return self.budget.expected_delay_s(self._pending_rows + self._running_rows, self.seconds_per_row)

    def reserve(self) -> None:
        """Admit one request that is not queued yet (:class:`Ticket`); raises like :meth:`admit`."""
        self.admit()
        self.budget.reserve()

    def unreserve(self, intake_s: float | None) -> None:
        """The reserved request leaves: queued after ``intake_s`` of reading and decoding, or failed."""
        self.budget.unreserve(intake_s)

    def admit(self, rows: int = 0) -> None:
        """Raise :class:`Unavailable`/:class:`~service.errors.Overloaded` unless a request of ``rows``
        rows may queue now: the version is open and its :class:`QueueBudget` lets it in."""
        if self._closed:
            raise Unavailable("model version is shutting down; retry")
        self.budget.check(self.expected_delay_s(), self._pending_rows, rows)

    async def submit(
        self, inputs: Batch, rows: int, deadline: float | None = None, admitted_s: float = 0.0
    ) -> tuple[Batch, Timing]:
        """Queue ``inputs`` (``rows`` rows) and wait for the outputs and the timing. ``deadline`` (event-loop
        time) lets the batcher drop the request unrun once it has passed; ``admitted_s``: how long ago it
        was admitted (:meth:`Ticket.release`), counted in the wait it is judged by."""
        self.admit(rows)
        self.budget.queued(rows)
        task = self._task
        if task is None:
            task = self._task = asyncio.get_running_loop().create_task(self._loop())
        loop = task.get_loop()  # the loop it runs on; asking for the running one costs a getpid call
        if rows <= self.max_batch_size:
            return await self._enqueue(loop, inputs, rows, deadline, admitted_s=admitted_s)
        step = self.max_batch_size
        chunks = [_slice(inputs, i, min(i + step, rows)) for i in range(0, rows, step)]
        results = await asyncio.gather(
            *(
                self._enqueue(
                    loop, c, min(step, rows - i * step), deadline, counted=i == 0, admitted_s=admitted_s
                )
                for i, c in enumerate(chunks)
            )
        )
        timing = Timing(
            queue_s=max(t.queue_s for _, t in results),
            compute_s=sum(t.compute_s for _, t in results),
            batch_rows=max(t.batch_rows for _, t in results),
        )
        return _concat([r for r, _ in results]), timing

    def _enqueue(
        self,
        loop: asyncio.AbstractEventLoop,
        inputs: Batch,
        rows: int,
        deadline: float | None,
        counted: bool = True,
        admitted_s: float = 0.0,
    ) -> asyncio.Future[tuple[Batch, Timing]]:
        item = _Item(inputs, rows, loop.create_future(), deadline, counted, admitted_s)
        self._pending.append(item)
        self._pending_rows += rows
        self._wakeup.set()
        return item.future

    def _take(self) -> list[_Item]:
        """The oldest request plus queued ones that can join it (same shapes, within max_batch_size);
        the others keep their order in the queue."""
        first = self._pending.popleft()
        items, rows = [first], first.rows
        skipped: list[_Item] = []
        while self._pending and rows < self.max_batch_size:
            item = self._pending.popleft()
            if rows + item.rows <= self.max_batch_size and item.signature == first.signature:
                items.append(item)
                rows += item.rows
            else:
                skipped.append(item)
        self._pending.extendleft(reversed(skipped))
        self._pending_rows -= rows
        return items

    async def _loop(self) -> None:
        inline_since = perf_counter()  # when the inline batches run back to back began (no yield since)
        while True:
            if not self._pending:
                self._busy_since = None  # idle: the next batch's cost starts when it does
                self._wakeup.clear()
                await self._wakeup.wait()
                inline_since = perf_counter()
            if self.max_wait_s and self._pending_rows < self.max_batch_size:
                await asyncio.sleep(max(0.0, self._pending[0].enqueued + self.max_wait_s - perf_counter()))
            live = self._live(self._take())
            if not live:
                continue
            try:
                ran_inline = await self._run_batch(live)
            except Exception as exc:  # the batch fails, the loop and every later batch go on
                ran_inline = False
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(exc)
            # Inline batches never yield: let the event loop run once they have held it for the inline
            # budget (one loop pass per batch would make a busy loop's pass, not the runtime, set the pace).
            if self._pending and perf_counter() - inline_since >= self.placement.inline_budget_s:
                yielded = perf_counter()
                await asyncio.sleep(0)
                inline_since = perf_counter()
                if ran_inline:  # after a batch on the thread, its hand-off measured the pass already
                    self.placement.loop_passed(inline_since - yielded)

    def _live(self, items: list[_Item]) -> list[_Item]:
        """``items`` less those whose caller went away or whose deadline passed (failed with 504)."""
        assert self._task is not None  # called by the batcher's own task
        now = self._task.get_loop().time()
        live = []
        for item in items:
            expired = item.deadline is not None and item.deadline <= now
            if item.future.done() or expired:
                if not item.future.done():
                    item.future.set_exception(TimedOut("the request's deadline passed while it was queued"))
                if item.counted and self._on_drop is not None:
                    self._on_drop("deadline" if expired else "cancelled")
            else:
                live.append(item)
        return live

    async def _run_batch(self, live: list[_Item]) -> bool:
        """Run one batch and answer its requests; ``True`` when it ran on the event loop."""
        total = sum(i.rows for i in live)
        started = perf_counter()
        for item in live:
            if item.counted:  # a split request's first chunk starts first: its wait is the request's
                self.budget.waited(item.admitted_s + started - item.enqueued)
        batch = _concat([i.inputs for i in live])
        self._running_rows = total
        try:
            outputs, cpu_s, ran_inline = await self.placement.call(batch, total, len(live))
        finally:
            self._running_rows = 0
        finished = perf_counter()
        self.placement.measured(finished - started, cpu_s, total, ran_inline)
        # While busy back to back, a batch costs the time since the previous one ended: that counts the
        # event loop's share of the CPU (decoding, merging, encoding) as well as the runtime's.
        begin = started if self._busy_since is None else self._busy_since
        self._busy_since = finished
        self._cost_s = self._cost_s * DECAY + (finished - begin)
        self._cost_rows = self._cost_rows * DECAY + total
        wrong = {name: len(v) for name, v in outputs.items() if len(v) != total}
        if wrong:
            raise RuntimeError(f"runtime returned {wrong} rows for a batch of {total}")
        if self._on_batch is not None:
            self._on_batch(total)
        offset = 0
        for item in live:
            if not item.future.done():
                part = outputs if len(live) == 1 else _slice(outputs, offset, offset + item.rows)
                item.future.set_result((part, Timing(started - item.enqueued, finished - started, total)))
            offset += item.rows
        return ran_inline

    async def close(self) -> None:
        """Stop the loop; queued requests fail with 503 (callers drain in-flight work first)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(Unavailable("model version was unloaded; retry"))
        self._pending_rows = 0
        self.placement.close()
