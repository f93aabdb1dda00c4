"""Where one batcher's runtime calls run: on the event loop itself or on the runtime's own thread.

A call on the thread costs two hand-offs, which for a short call (``inline_s``; CPU runtimes only)
cost more than the call itself, so such a call runs on the event loop. Under load a batch merged from
several requests also runs there when it is shorter than a pass of the busy event loop: on the thread
its answer waits for the loop to come round (measured on one core at saturation, 512 connections: a
64-row CNN call computing in 0.8 ms took 28-48 ms from hand-off to answer, and the runtime thread had
1-5 % of the core). Calls are judged by the CPU time of the thread that ran them (``cpu_timed``:
runtimes that compute on the caller's thread), so a busy core does not make a short call look long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from time import thread_time

import numpy as np

from service.queue_budget import DECAY, average

Batch = dict[str, np.ndarray]
MAX_INLINE_S = 0.02
"""The longest a busy event loop's pass may make an inline call or a run of them (see
:attr:`Placement.inline_budget_s`)."""


class Placement:
    """Runs one batcher's calls of ``run`` inline or on its thread, and measures them to choose."""

    def __init__(
        self, run: Callable[[Batch], Batch], *, name: str, inline_s: float = 0.0, cpu_timed: bool = False
    ) -> None:
        self._run = run
        self.inline_s = inline_s
        """A batch whose runtime call is expected to take at most this long runs on the event loop itself
        instead of the runtime thread (0: never)."""
        self.cpu_timed = cpu_timed
        """Whether ``run`` computes on its caller's thread alone, so that thread's CPU time is the call's
        cost (the wall time also counts waiting for the GIL and the core)."""
        self._call_s = 0.0  # decayed sums: the runtime calls alone, and their rows
        self._call_rows = 0.0
        self._pass_s = 0.0  # decaying average: one pass of the event loop, as the batcher waits for it
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"runtime-{name}")

    async def call(self, batch: Batch, rows: int, requests: int) -> tuple[Batch, float, bool]:
        """The outputs of ``batch`` (``rows`` rows from ``requests`` requests), the CPU seconds its call
        took on the thread that ran it, and whether that was the event loop's."""
        if self.inline(rows, requests):
            outputs, cpu_s = self._timed_run(batch)
            return outputs, cpu_s, True
        loop = asyncio.get_running_loop()
        outputs, cpu_s = await loop.run_in_executor(self.executor, self._timed_run, batch)
        return outputs, cpu_s, False

    def measured(self, wall_s: float, cpu_s: float, rows: int, inline: bool) -> None:
        """A call of ``rows`` rows took ``wall_s`` from start to answer and ``cpu_s`` of its thread."""
        call_s = min(wall_s, cpu_s) if self.cpu_timed else wall_s
        if not inline and self.cpu_timed:  # the rest of the wall time: waiting for the loop to notice
            self.loop_passed(wall_s - call_s)
        self._call_s = self._call_s * DECAY + call_s
        self._call_rows = self._call_rows * DECAY + rows

    def loop_passed(self, seconds: float) -> None:
        """One pass of the event loop took ``seconds``, as the batcher waited for it."""
        self._pass_s = average(self._pass_s, seconds)

    def _timed_run(self, batch: Batch) -> tuple[Batch, float]:
        """The runtime's outputs for ``batch`` and the CPU seconds the calling thread spent on them."""
        started = thread_time()
        outputs = self._run(batch)
        return outputs, thread_time() - started

    @property
    def inline_budget_s(self) -> float:
        """How long inline calls may hold the event loop before it runs again: :attr:`inline_s`, or one
        measured pass of the loop when that is longer (at most :data:`MAX_INLINE_S`)."""
        return max(self.inline_s, min(self._pass_s, MAX_INLINE_S))

    def inline(self, rows: int, requests: int) -> bool:
        """Whether a batch of ``rows`` rows from ``requests`` requests runs on the event loop: its call is
        expected (from recent calls, so never the first) to take at most :attr:`inline_s`, or, for a
        batch merged from several requests, at most one measured loop pass: a batch on the thread waits
        about a pass for the busy loop to take its answer, so under load such a call costs its requests
        less inline, and inline batches then run back to back for about a pass, giving the runtime about
        as much of the core as the rest of the loop. (The chunks of one large request stay on the
        thread, where measured they keep more goodput.)"""
        if self.inline_s <= 0 or self._call_rows <= 0:
            return False
        expected = self._call_s / self._call_rows * rows
        return expected <= (self.inline_budget_s if requests > 1 else self.inline_s)

    def close(self) -> None:
        """Wait for a call in progress on the thread, then stop the thread."""
        self.executor.shutdown(wait=True)
