"""Feedback: true labels or values for answered requests, matched by request id, as live accuracy or error.

A model takes feedback when its ``serving.yaml`` entry says so (``feedback: {enabled: true, keep_s:
86400}``). Then each of its answers is remembered: :meth:`Feedback.observe` puts the
:class:`~service.ops.Served` record (by reference) into a bounded queue (``SERVING_FEEDBACK_QUEUE``;
full: dropped and counted in ``serving_feedback_dropped_total``), and a writer thread reads the
prediction off the outputs and stores it in batches in the shared store
(:class:`~service.ops.feedback_store.FeedbackStore`, SQLite under ``SERVING_STATE_DIR``), normally
within milliseconds of the answer. ``POST /v1/feedback`` (:meth:`Feedback.submit`) matches items in any
worker and records, per model and version:

- ``serving_feedback_total{result}``: rows ``correct`` / ``wrong`` (classifiers), values ``measured``
  (regressors), and items that did not count (``unknown``, ``wrong_model``, ``duplicate``, ``bad_label``);
  ``increase(..{result="correct"}[1h]) / increase(..{result=~"correct|wrong"}[1h])`` is the exact
  accuracy over any window, all workers together;
- ``serving_feedback_abs_error`` (histogram, regressors), each value's absolute error;
- gauges over the latest ``SERVING_FEEDBACK_WINDOW`` items received within ``SERVING_FEEDBACK_WINDOW_S``,
  computed from the shared store after each feedback call (so every worker reports the same figure):
  ``serving_feedback_accuracy``, ``serving_feedback_mean_abs_error``, ``serving_feedback_window_rows``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from service.errors import InvalidInput, NotFound, Unavailable
from service.metrics import get_metrics
from service.ops.feedback_store import FeedbackStore, Item, Outcome, Remembered, Target, Window

if TYPE_CHECKING:
    from service.models.config import RepositoryConfig
    from service.models.registry import ModelRegistry
    from service.ops import Served

log = logging.getLogger("service.ops.feedback")
STORE_FILE = "feedback.sqlite3"
BATCH = 512
PRUNE_EVERY_S = 60.0
_STOP: Any = object()


class Feedback:
    """The feedback feature of one worker: remembers predictions, matches feedback, keeps the metrics."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.settings = registry.settings
        self.keep: dict[str, float] = {}
        """Model -> seconds its predictions are remembered, for the models that take feedback."""
        self.store: FeedbackStore | None = None
        self.queue: queue.Queue[Any] = queue.Queue(self.settings.feedback_queue)
        self.thread: threading.Thread | None = None
        self._pruned = 0.0

    # ----- the feature ----------------------------------------------------------------------------
    def configure(self, config: RepositoryConfig) -> bool:
        keep = {}
        for name in self.registry.models:
            effective = config.policy(name).effective(self.settings)
            if effective.feedback:
                keep[name] = effective.feedback_keep_s
        if keep and self.store is None and not self._open():
            keep = {}
        self.keep = keep
        return bool(keep)

    def _open(self) -> bool:
        path = self.settings.state_dir / STORE_FILE
        try:
            self.store = FeedbackStore(path)
        except (OSError, sqlite3.Error) as exc:
            log.error("feedback is off: cannot open %s (SERVING_STATE_DIR): %s", path, exc)
            return False
        get_metrics()  # created here, not first from two threads at once
        self.thread = threading.Thread(target=self._run, name="feedback-writer", daemon=True)
        self.thread.start()
        return True

    def observe(self, served: Served) -> None:
        keep_s = self.keep.get(served.model)
        if keep_s is None:
            return
        try:
            self.queue.put_nowait((time.time(), keep_s, served))
        except queue.Full:
            get_metrics().feedback_dropped.labels(served.model, "queue_full").inc()

    def close(self, timeout_s: float = 10.0) -> None:
        """Store what is queued, then close the store (at shutdown)."""
        self.keep = {}
        if self.thread is not None and self.thread.is_alive():
            try:
                self.queue.put(_STOP, timeout=timeout_s)
            except queue.Full:
                log.error("feedback writer did not drain its queue within %.0f s", timeout_s)
            self.thread.join(timeout_s)
        if self.store is not None:
            self.store.close()
            self.store = None

    # ----- the writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self._remember([item for item in batch if item is not _STOP])
            if any(item is _STOP for item in batch):
                return

    def _remember(self, batch: list[tuple[float, float, Served]]) -> None:
        metrics, store = get_metrics(), self.store
        rows = []
        for ts, keep_s, served in batch:
            target = self._target(served.model, served.version)
            try:
                assert target is not None, "the version has no metadata"
                prediction = target.prediction(served.outputs)
            except Exception as exc:  # an output the target cannot read: count it, keep going
                log.warning(
                    "feedback: cannot read the prediction of %s v%d: %s", served.model, served.version, exc
                )
                metrics.feedback_dropped.labels(served.model, "unreadable").inc()
                continue
            rows.append(
                Remembered(
                    served.request_id, served.model, served.version, ts, ts + keep_s, target, prediction
                )
            )
        if not rows or store is None:
            return
        now = time.time()
        try:
            store.remember(rows)
            if now - self._pruned >= PRUNE_EVERY_S:
                self._pruned = now
                store.prune(now)
        except sqlite3.Error as exc:
            log.error("feedback: cannot write to %s: %s", store.path, exc)
            for model, n in Counter(r.model for r in rows).items():
                metrics.feedback_dropped.labels(model, "write_error").inc(n)

    def _target(self, model: str, version: int) -> Target | None:
        sv = self.registry.models.get(model, {}).get(version)
        meta = sv.metadata if sv is not None else None
        if meta is None:
            return None
        return Target(meta.outputs[0].name, tuple(meta.labels) if meta.labels else None)

    # ----- POST /v1/feedback ----------------------------------------------------------------------
    async def submit(self, model: str, items: list[Item]) -> dict[str, Any]:
        """Match ``items`` (their model's answers) and update the metrics; the answer per item and the
        window figures of every version that got feedback."""
        if model not in self.registry.models:
            if not self.registry.initial_load_done:
                raise Unavailable("the server is still loading its models; retry")
            raise NotFound(f"model {model!r} not found; available models: {sorted(self.registry.models)}")
        if model not in self.keep or self.store is None:
            raise InvalidInput(
                f"model {model!r} takes no feedback; turn it on in serving.yaml "
                f"(models: {{{model}: {{feedback: {{enabled: true}}}}}})"
            )
        outcomes, windows = await asyncio.to_thread(self._match, self.store, model, items, time.time())
        self._count(model, outcomes, windows)
        return {
            "model": model,
            "results": [_result(o) for o in outcomes],
            "counts": dict(Counter(o.status for o in outcomes)),
            "windows": [_window(v, w, classifier) for v, (w, classifier) in sorted(windows.items())],
        }

    def _match(
        self, store: FeedbackStore, model: str, items: list[Item], now: float
    ) -> tuple[list[Outcome], dict[int, tuple[Window, bool]]]:
        outcomes = store.match(model, items, now)
        settings = self.settings
        versions = {
            o.version: o.classifier for o in outcomes if o.status == "matched" and o.version is not None
        }
        windows = {
            v: (store.window(model, v, now, settings.feedback_window, settings.feedback_window_s), classifier)
            for v, classifier in versions.items()
        }
        return outcomes, windows

    @staticmethod
    def _count(model: str, outcomes: list[Outcome], windows: dict[int, tuple[Window, bool]]) -> None:
        m = get_metrics()
        for o in outcomes:
            version = "" if o.version is None else str(o.version)
            if o.scored is None:
                m.feedback.labels(model, version, o.status).inc()
            elif o.classifier:
                m.feedback.labels(model, version, "correct").inc(o.scored.correct)
                m.feedback.labels(model, version, "wrong").inc(o.scored.rows - o.scored.correct)
            else:
                m.feedback.labels(model, version, "measured").inc(o.scored.rows)
                histogram = m.feedback_abs_error.labels(model, version)
                for error in o.scored.abs_errors:
                    histogram.observe(error)
        for number, (window, classifier) in windows.items():
            if window.rows:
                gauge = m.feedback_accuracy if classifier else m.feedback_mae
                gauge.labels(model, str(number)).set(_figure(window, classifier))
                m.feedback_window_rows.labels(model, str(number)).set(window.rows)


def _figure(window: Window, classifier: bool) -> float:
    """Accuracy (classifiers) or mean absolute error (regressors) of a window with rows."""
    return window.correct / window.rows if classifier else window.abs_error / window.rows


def _result(o: Outcome) -> dict[str, Any]:
    result: dict[str, Any] = {"request_id": o.request_id, "status": o.status}
    if o.version is not None:
        result["version"] = o.version
    if o.scored is not None:
        result["rows"] = o.scored.rows
        if o.classifier:
            result["correct"] = o.scored.correct
        else:
            result["abs_error"] = sum(o.scored.abs_errors) / max(o.scored.rows, 1)
    if o.error is not None:
        result["error"] = o.error
    return result


def _window(version: int, window: Window, classifier: bool) -> dict[str, Any]:
    name = "accuracy" if classifier else "mean_abs_error"
    return {
        "version": version,
        "rows": window.rows,
        name: _figure(window, classifier) if window.rows else None,
    }
