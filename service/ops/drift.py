"""Drift detection: is the traffic still like the training data?

On for every served version whose ``metadata.json`` has a ``reference`` (recorded at export by
:mod:`training.reference`) unless ``serving.yaml`` turns it off for the model (``drift: {enabled:
false}``) or ``SERVING_DRIFT_ENABLED=false`` does for all models without an entry.

Per version and worker, a **window** holds the reference groups' bin counts of the last ``window_rows``
answered rows (``drift.window_rows``, default ``SERVING_DRIFT_WINDOW_ROWS``): a ring buffer of per-row
counts and their running totals, so a row leaves the window exactly when it is ``window_rows`` rows old.
A window changes only with traffic; with none, the scores stay those of the last rows served.

Cost on the request path: :meth:`Drift.observe` is a dict look-up and a deque append of the arrays by
reference (nothing is copied or binned there). Each version queues only what its window can still
use: once its queue holds ``window_rows`` rows without its oldest request, that request leaves it (it
would leave the window as soon as it was binned), so the arrays of at most about ``window_rows`` rows
per version stay referenced, and under load the window is the last rows answered, not the first of
each interval.

Above ``drift.sample_rows_per_s`` answered rows per second (default ``SERVING_DRIFT_SAMPLE_ROWS_PER_S``;
per version and worker, measured over each ``SERVING_DRIFT_INTERVAL_S``) the observer keeps each row
with probability ``budget / rate`` for the next interval and lets the others go before the queue's
lock: under load the window is then a uniform random sample of the recent rows rather than all of
them, which scores the same distribution at a fraction of the cost (queueing every row of a
64-connection single-image load cost about 4 % of the throughput and 2 ms of p99). Rows let go are
counted once per interval (``serving_drift_dropped_rows_total{reason="sampled"}``).

A thread wakes every ``SERVING_DRIFT_INTERVAL_S``, takes what is queued, bins it
(:mod:`service.ops.drift_stats`) and sets the gauges. At most ``SERVING_DRIFT_QUEUE_ROWS`` rows wait
over all versions; rows beyond are dropped and counted
(``serving_drift_dropped_rows_total{reason="queue_full"}``).

Score: the PSI of each group against its reference proportions (:func:`~service.ops.drift_stats.psi`;
< 0.1 stable, 0.1-0.25 moderate, > 0.25 drift) as ``serving_drift_score{model, version, feature}``, the
rows behind it as ``serving_drift_window_rows{model, version}``. Each worker has its own window, so both
gauges are per worker (``multiprocess_mode="liveall"``: a ``pid`` label, dead workers' series dropped):
a score means something only beside its own window's size, and the alert pairs them per worker before
taking the maximum. A version that stops being served gets window rows 0 (its last score stays but no
longer alerts).
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING

import numpy as np

from service.metrics import get_metrics
from service.ops.drift_stats import group_histograms, psi

if TYPE_CHECKING:
    from service.models.config import RepositoryConfig
    from service.models.registry import ModelRegistry
    from service.ops import Served
    from service.schema import ModelMetadata, Reference

log = logging.getLogger("service.ops.drift")
Key = tuple[str, int]


def reference_problem(metadata: ModelMetadata) -> str | None:
    """Why ``metadata.reference`` cannot be applied to the model's signature (``None``: it can)."""
    reference = metadata.reference
    assert reference is not None
    if len(metadata.inputs) != 1 or len(metadata.outputs) != 1:
        return "a reference needs a model with one input and one output"
    width = math.prod(metadata.inputs[0].shape[1:])
    outputs = math.prod(metadata.outputs[0].shape[1:])
    for group in reference.groups:
        if (
            group.statistic == "input_feature"
            and width > 0
            and group.index is not None
            and group.index >= width
        ):
            return f"group {group.name!r}: index {group.index} beyond the {width} values of an input row"
        classes = 2 if outputs == 1 else outputs
        if group.statistic == "predicted_class" and outputs > 0 and len(group.proportions) != classes:
            return f"group {group.name!r}: {len(group.proportions)} classes, the output gives {classes}"
    return None


class Window:
    """The bin counts of one version's last ``capacity`` rows, one ring buffer per reference group."""

    def __init__(
        self, model: str, version: int, metadata: ModelMetadata, capacity: int, budget_per_s: float = math.inf
    ) -> None:
        reference: Reference | None = metadata.reference
        assert reference is not None
        self.model, self.version, self.capacity = model, version, capacity
        self.input, self.output = metadata.inputs[0].name, metadata.outputs[0].name
        self.groups = reference.groups
        self.expected = [np.asarray(g.proportions, np.float64) for g in self.groups]
        self.ring = [np.zeros((capacity, len(g.proportions)), np.int32) for g in self.groups]
        self.totals = [np.zeros(len(g.proportions), np.int64) for g in self.groups]
        self.head = 0
        self.rows = 0
        self.retired = False
        self.queue: deque[tuple[np.ndarray, np.ndarray]] = deque()
        """Served batches not binned yet (guarded by :attr:`Drift.queue_lock`)."""
        self.queued = 0
        """The rows in :attr:`queue`."""
        self.budget_per_s = budget_per_s
        """Answered rows per second above which rows are sampled (``drift.sample_rows_per_s``)."""
        self.keep = 1.0
        """The share of answered rows queued in this interval (event loop only, as the three below)."""
        self.offered = 0
        """Rows answered since :attr:`since`."""
        self.skipped = 0
        """Rows let go by the sampling since :attr:`since`, not counted yet."""
        self.since = perf_counter()
        metrics = get_metrics()
        label = str(version)
        self.dropped = metrics.drift_dropped.labels(model, label, "queue_full")
        self.sampled = metrics.drift_dropped.labels(model, label, "sampled")
        self.rows_gauge = metrics.drift_window_rows.labels(model, label)
        self.rows_gauge.set(0)
        self.score_gauges = [metrics.drift_score.labels(model, label, g.name) for g in self.groups]

    def add(self, inputs: np.ndarray, outputs: np.ndarray) -> None:
        """Bin a batch of rows into the window; the oldest rows leave it."""
        if len(inputs) > self.capacity:
            inputs, outputs = inputs[-self.capacity :], outputs[-self.capacity :]
        n = len(inputs)
        slots = (self.head + np.arange(n)) % self.capacity
        for group, ring, totals in zip(self.groups, self.ring, self.totals, strict=True):
            counts = group_histograms(group, inputs, outputs)
            totals -= ring[slots].sum(axis=0)
            ring[slots] = counts
            totals += counts.sum(axis=0)
        self.head = (self.head + n) % self.capacity
        self.rows = min(self.capacity, self.rows + n)

    def sample(self, rows: int, now: float, interval_s: float) -> float:
        """Count ``rows`` answered at ``now``; the share of them to queue. Once an interval has passed
        since the last estimate, the rate over it sets :attr:`keep` for the next one (all rows while
        the rate is within :attr:`budget_per_s`) and the rows let go in it are counted."""
        self.offered += rows
        elapsed = now - self.since
        if elapsed >= interval_s:
            self.keep = min(1.0, self.budget_per_s * elapsed / max(self.offered, 1))
            if self.skipped:
                self.sampled.inc(self.skipped)
            self.offered = self.skipped = 0
            self.since = now
        return self.keep

    def scores(self) -> dict[str, float]:
        """PSI per group over the rows now in the window (NaN while it is empty)."""
        return {g.name: psi(e, t) for g, e, t in zip(self.groups, self.expected, self.totals, strict=True)}

    def publish(self) -> None:
        if self.retired:  # rows queued before it left the feature
            return
        for gauge, score in zip(self.score_gauges, self.scores().values(), strict=True):
            if not math.isnan(score):
                gauge.set(score)
        self.rows_gauge.set(self.rows)

    def retire(self) -> None:
        """The version left the drift feature: its window no longer counts (rows 0)."""
        self.retired = True
        self.rows_gauge.set(0)


class Drift:
    """The drift feature of one worker: windows per version, a bounded queue, a binning thread."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.settings = registry.settings
        self.windows: dict[Key, Window] = {}
        """The versions drift is on for now; replaced whole by :meth:`configure`."""
        self.waiting = 0
        """Rows in every window's queue together (guarded by :attr:`queue_lock`)."""
        self.queue_lock = threading.Lock()
        """Held by the event loop to queue a batch and by the thread to take a queue: never while binning."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refused: set[Key] = set()
        self._rng = np.random.default_rng()

    def configure(self, config: RepositoryConfig) -> bool:
        from service.models.version import State

        windows: dict[Key, Window] = {}
        for name, versions in self.registry.models.items():
            effective = config.policy(name).effective(self.settings)
            if not effective.drift:
                continue
            for version, sv in versions.items():
                metadata = sv.metadata
                if sv.state is not State.READY or metadata is None or metadata.reference is None:
                    continue
                key = (name, version)
                current = self.windows.get(key)
                if current is not None and current.capacity == effective.drift_window_rows:
                    current.budget_per_s = effective.drift_sample_rows_per_s
                    windows[key] = current
                elif (problem := reference_problem(metadata)) is not None:
                    if key not in self._refused:
                        self._refused.add(key)
                        log.warning("drift is off for %s version %s: %s", name, version, problem)
                else:
                    windows[key] = Window(
                        name,
                        version,
                        metadata,
                        effective.drift_window_rows,
                        effective.drift_sample_rows_per_s,
                    )
        for key, window in self.windows.items():
            if windows.get(key) is not window:
                window.retire()
                with self.queue_lock:  # its rows would no longer be scored
                    self.waiting -= window.queued
                    window.queue.clear()
                    window.queued = 0
        self.windows = windows
        if windows and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="drift", daemon=True)
            self._thread.start()
        return bool(windows)

    def observe(self, served: Served) -> None:
        window = self.windows.get((served.model, served.version))
        if window is None:
            return
        inputs, outputs = served.inputs[window.input], served.outputs[window.output]
        rows = len(inputs)
        settings = self.settings
        keep = window.sample(rows, perf_counter(), settings.drift_interval_s)
        if keep < 1.0:
            if rows == 1:
                if random.random() >= keep:
                    window.skipped += 1
                    return
            else:
                chosen = self._rng.random(rows) < keep
                kept = int(np.count_nonzero(chosen))
                window.skipped += rows - kept
                if not kept:
                    return
                inputs, outputs, rows = inputs[chosen], outputs[chosen], kept
        with self.queue_lock:
            if self.waiting + rows > settings.drift_queue_rows:
                window.dropped.inc(rows)
                return
            queue = window.queue
            queue.append((inputs, outputs))
            window.queued += rows
            self.waiting += rows
            # the oldest request would leave the window as soon as it was binned: let it go now
            while window.queued - len(queue[0][0]) >= window.capacity:
                gone = len(queue.popleft()[0])
                window.queued -= gone
                self.waiting -= gone

    def flush(self) -> int:
        """Bin everything queued now and update the gauges; returns the rows that reached a window."""
        with self._lock:
            binned = 0
            for window in list(self.windows.values()):
                with self.queue_lock:
                    items, window.queue = list(window.queue), deque()
                    self.waiting -= window.queued
                    window.queued = 0
                if not items:
                    continue
                try:
                    window.add(np.concatenate([i for i, _ in items]), np.concatenate([o for _, o in items]))
                    window.publish()
                    binned += min(window.capacity, sum(len(i) for i, _ in items))
                except Exception:  # a bug here must never stop the thread
                    log.exception("drift: binning rows of %s version %s failed", window.model, window.version)
            return binned

    def _run(self) -> None:
        while not self._stop.wait(self.settings.drift_interval_s):
            self.flush()

    def close(self) -> None:
        """Stop the thread (queued rows are of no use after shutdown)."""
        self._stop.set()
