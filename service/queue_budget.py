"""Admission to one batcher's queue by the wait a request would have there.

The batcher (:mod:`service.batching`) measures its seconds per row and knows the rows queued and
running; :class:`QueueBudget` adds what it knows of requests on their way in and decides. The wait a
request admitted now would have is the measured time from admission to the queue (reading and decoding
the request), plus the rows ahead of it, counting requests admitted before it that are still being
read or decoded (:meth:`QueueBudget.reserve`), times seconds per row. A request whose expected wait is
over ``max_queue_delay_ms`` is rejected at once (:class:`~service.errors.Overloaded`, with a
``Retry-After`` of the time the backlog needs to come back under the threshold) instead of after the
wait; ``max_queue_rows`` stays a hard cap.

The estimate errs (batches vary, the event loop's share of the core moves), so the budget also hears
what admitted requests then waited (admission to the start of their batch, :meth:`QueueBudget.waited`)
and moves the expected wait it admits at (:attr:`QueueBudget.admit_at_s`, at most the budget) until
about :data:`TAIL` of them wait longer than the budget.
"""

from __future__ import annotations

import math

from service.errors import Overloaded

DECAY = 0.9
"""Weight of the past in the batcher's and the budget's decaying averages (about the last 10 samples count)."""
TAIL = 0.01
"""The share of admitted requests that may wait longer than ``max_queue_delay_ms`` before their batch
starts: the admission threshold settles where about this many do."""
TAIL_STEP = 0.05
"""How far one observed wait moves the admission threshold, as a share of the budget: down by about this
much when a request waited longer than the budget, up by ``TAIL`` times this otherwise."""
MIN_ADMIT_AT = 0.25
"""The lowest the admission threshold goes, as a share of the budget."""


def average(past: float, sample: float) -> float:
    """A decaying average (weight :data:`DECAY` on the past) after one more ``sample``."""
    return past * DECAY + sample * (1 - DECAY)


class QueueBudget:
    """The admission side of one batcher: requests on their way in, the threshold, the decision."""

    def __init__(self, max_queue_delay_ms: float, max_queue_rows: int, max_wait_s: float = 0.0) -> None:
        self.max_queue_delay_s = max_queue_delay_ms / 1000.0
        self.max_queue_rows = max_queue_rows
        self.max_wait_s = max_wait_s
        """How long the batcher may hold a request for company: a wait that long is by design."""
        self.admit_at_s = self.max_queue_delay_s
        """The expected wait above which a request is rejected: the budget, lowered while more than
        :data:`TAIL` of the admitted requests wait longer than the budget (see :meth:`waited`)."""
        self.reserved = 0
        """Requests admitted (:class:`~service.batching.Ticket`) and not queued yet: reading or decoding."""
        self._rows_per_request = 1.0  # decaying average, to count what the reserved ones will bring
        self._intake_s = 0.0  # decaying average: admission to queue (reading and decoding the request)

    def expected_delay_s(self, ahead_rows: int, seconds_per_row: float) -> float:
        """The wait of a request admitted now behind ``ahead_rows`` queued or running rows."""
        reserved_rows = self.reserved * self._rows_per_request
        return self._intake_s + (ahead_rows + reserved_rows) * seconds_per_row

    def check(self, expected_s: float, queued_rows: int, rows: int) -> None:
        """Raise :class:`Overloaded` unless a request of ``rows`` rows, expected to wait ``expected_s``
        behind ``queued_rows`` queued rows, may join: its wait is within the threshold and the queue
        has room (counting what the reserved requests will bring)."""
        if expected_s > self.admit_at_s:
            budget = f"this model's budget of {self.max_queue_delay_s * 1000:g} ms"
            if self.admit_at_s < self.max_queue_delay_s:  # recent requests waited longer than expected
                budget = f"{self.admit_at_s * 1000:.0f} ms, what {budget} admits while waits run over it"
            raise Overloaded(
                f"expected queue wait {expected_s * 1000:.0f} ms is over {budget} "
                f"({queued_rows} rows queued); retry later",
                "queue_delay",
                max(1, math.ceil(expected_s - self.admit_at_s)),
            )
        if queued_rows + self.reserved * self._rows_per_request + rows > self.max_queue_rows:
            raise Overloaded(
                f"model queue full ({queued_rows} rows queued, limit {self.max_queue_rows}); retry later",
                "queue_full",
                max(1, math.ceil(expected_s)),
            )

    def reserve(self) -> None:
        """One more admitted request on its way to the queue (checked by the caller first)."""
        self.reserved += 1

    def unreserve(self, intake_s: float | None) -> None:
        """The reserved request leaves: queued after ``intake_s`` of reading and decoding, or failed."""
        self.reserved -= 1
        if intake_s is not None:
            self._intake_s = average(self._intake_s, intake_s)

    def queued(self, rows: int) -> None:
        """A request of ``rows`` rows joined the queue."""
        self._rows_per_request = average(self._rows_per_request, rows)

    def waited(self, waited_s: float) -> None:
        """Move :attr:`admit_at_s` after a request waited ``waited_s`` from admission to its batch's start:
        down when that is over the budget, a little up otherwise (a quantile tracker: it settles where
        about :data:`TAIL` of the waits are over the budget)."""
        budget = self.max_queue_delay_s
        over = 1.0 if waited_s > budget + self.max_wait_s else 0.0  # waiting for company is by design
        moved = self.admit_at_s - TAIL_STEP * budget * (over - TAIL)
        self.admit_at_s = min(budget, max(MIN_ADMIT_AT * budget, moved))
