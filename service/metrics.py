"""Prometheus metrics of the server, created lazily in one place.

BentoML runs several worker processes and sets ``PROMETHEUS_MULTIPROC_DIR`` for them; prometheus_client
picks its storage when a metric is created, so nothing here exists before :func:`get_metrics` is first
called from a running worker. BentoML's ``/metrics`` route aggregates every worker's values, ours
included. Names all start with ``serving_``; the README's metrics table lists each one.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from service.metric_buffer import buffered

LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
BYTES_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
ERROR_BUCKETS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
LAST_INFERENCE_INTERVAL_S = 0.01
"""The most often a version's latest runtime call is written to ``serving_last_inference_timestamp_seconds``
(:class:`service.metric_buffer.LatestTime`)."""


@dataclass(frozen=True, slots=True)
class RequestSeries:
    """The series an answered inference request of one model version and protocol touches, bound once
    (a ``labels()`` look-up costs about as much as the observation itself)."""

    inflight: Any
    latency: Any
    queue: Any
    compute: Any
    success: Any
    """``serving_requests_total{code="200", outcome="success"}``."""
    success_seconds: Any
    """``serving_request_success_seconds_total`` of the version (Triton's ``success.ns``)."""


class Metrics:
    """Holds every metric object; one instance per process."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self._series: dict[tuple[str, str, str], RequestSeries] = {}
        self._bound: dict[tuple[Any, tuple[str, ...]], Any] = {}
        mv = ["model", "version"]
        mvp = ["model", "version", "protocol"]
        self.requests = Counter(
            "serving_requests", "Inference requests by outcome.", [*mvp, "code", "outcome"]
        )
        self.latency = Histogram(
            "serving_request_duration_seconds", "End-to-end inference latency in the server.", mvp,
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.success_seconds = Counter(
            "serving_request_success_seconds", "Time answered inference requests spent in the server.", mv
        )
        self.queue = Histogram(
            "serving_queue_duration_seconds", "Time a request waited for its batch to start.", mv,
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.compute = Histogram(
            "serving_compute_duration_seconds", "Runtime time of the batch a request ran in.", mv,
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.batch_size = Histogram(
            "serving_batch_size", "Rows per runtime call after merging requests.", mv, buckets=BATCH_BUCKETS
        )
        self.last_inference = Gauge(
            "serving_last_inference_timestamp_seconds",
            "Unix time at which the version's latest runtime call ended, written at once or within "
            f"{LAST_INFERENCE_INTERVAL_S * 1000:g} ms (0: none yet; the latest over the workers).",
            mv,
            multiprocess_mode="max",
        )
        self.inflight = Gauge(
            "serving_inflight_requests", "Requests being processed now.", mvp, multiprocess_mode="livesum"
        )
        self.rejected = Counter(
            "serving_rejected",
            "Requests rejected at admission (expected queue delay, queue full, or in-flight cap).",
            [*mvp, "reason"],
        )
        self.admission_threshold = Gauge(
            "serving_admission_threshold_seconds",
            "Expected queue wait above which a request is refused: max_queue_delay_ms, lowered while "
            "admitted requests wait longer (the lowest over the workers).",
            mv,
            multiprocess_mode="livemin",
        )
        self.dropped = Counter(
            "serving_dropped",
            "Queued requests dropped before they ran: their deadline passed or their client went away.",
            [*mv, "reason"],
        )
        self.model_state = Gauge(
            "serving_model_state", "1 for the state a model version is in.", [*mv, "state"],
            multiprocess_mode="livemax",
        )  # fmt: skip
        self.load_seconds = Gauge(
            "serving_model_load_duration_seconds", "Load + warm-up time of a model version.", mv,
            multiprocess_mode="livemax",
        )  # fmt: skip
        self.info = Gauge(
            "serving_model_info", "Runtime and execution provider of a model version.", [*mv, "runtime", "provider"],
            multiprocess_mode="livemax",
        )  # fmt: skip
        self.request_bytes = Histogram(
            "serving_request_bytes", "Request body size.", ["model", "protocol"], buckets=BYTES_BUCKETS
        )
        self.response_bytes = Histogram(
            "serving_response_bytes", "Response body size.", ["model", "protocol"], buckets=BYTES_BUCKETS
        )
        self.http_requests = Counter(
            "serving_http_requests",
            "HTTP answers of our REST routes in the fast lane.",
            ["api", "method", "code"],
        )
        self.http_latency = Histogram(
            "serving_http_request_duration_seconds", "Time to answer one of our REST routes (fast lane).", ["api"],
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.worker_ready = Gauge(
            "serving_worker_ready", "1 once this worker has loaded the repository (first pass done).",
            multiprocess_mode="liveall",
        )  # fmt: skip
        self.bentoml_patch = Gauge(
            "serving_bentoml_patch_active", "1 when a BentoML patch is applied in every worker, else 0.", ["patch"],
            multiprocess_mode="livemin",
        )  # fmt: skip
        # BentoML's multiprocess /metrics has no process_* collector, so each worker reports its own.
        self.process_cpu = Gauge(
            "serving_process_cpu_seconds", "CPU time (user + system) used by this worker process.",
            multiprocess_mode="liveall",
        )  # fmt: skip
        self.process_rss = Gauge(
            "serving_process_resident_memory_bytes", "Resident memory of this worker process.",
            multiprocess_mode="liveall",
        )  # fmt: skip
        # Per GPU (NVML, service/gpu.py): series exist only where NVML finds a device.
        gpu = ["gpu", "name"]
        self.gpu_utilization = Gauge(
            "serving_gpu_utilization_ratio", "Share of time a GPU was busy (NVML), 0-1.", gpu,
            multiprocess_mode="livemax",
        )  # fmt: skip
        self.gpu_memory_used = Gauge(
            "serving_gpu_memory_used_bytes", "GPU memory in use (NVML), all processes.", gpu,
            multiprocess_mode="livemax",
        )  # fmt: skip
        self.gpu_memory_total = Gauge(
            "serving_gpu_memory_total_bytes", "GPU memory in total (NVML).", gpu, multiprocess_mode="livemax"
        )
        # Payload capture and feedback (service/ops/capture.py, service/ops/feedback.py).
        self.capture_written = Counter(
            "serving_capture_written", "Captured answers written to the capture files.", ["model"]
        )
        self.capture_dropped = Counter(
            "serving_capture_dropped", "Sampled answers not captured (writer queue full, write failed).",
            ["model", "reason"],
        )  # fmt: skip
        self.feedback = Counter(
            "serving_feedback", "Feedback rows by result (correct, wrong, measured) or why an item did not count.",
            [*mv, "result"],
        )  # fmt: skip
        self.feedback_abs_error = Histogram(
            "serving_feedback_abs_error", "Absolute error of a regressor's predictions against feedback.", mv,
            buckets=ERROR_BUCKETS,
        )  # fmt: skip
        self.feedback_accuracy = Gauge(
            "serving_feedback_accuracy", "Share of correct rows in the feedback window (classifiers).", mv,
            multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.feedback_mae = Gauge(
            "serving_feedback_mean_abs_error", "Mean absolute error in the feedback window (regressors).", mv,
            multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.feedback_window_rows = Gauge(
            "serving_feedback_window_rows", "Rows (values) the feedback window's figure is computed over.", mv,
            multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.feedback_dropped = Counter(
            "serving_feedback_dropped", "Predictions not remembered for feedback (queue full, write failed).",
            ["model", "reason"],
        )  # fmt: skip
        # Traffic split and shadow traffic (service/ops/traffic.py, service/ops/shadow.py).
        self.traffic = Counter(
            "serving_traffic_requests", "Requests the traffic split routed, by variant and the version it named.",
            ["model", "variant", "version"],
        )  # fmt: skip
        self.traffic_fallbacks = Counter(
            "serving_traffic_fallbacks", "Split requests whose variant was not ready, sent to another variant.",
            ["model", "variant"],
        )  # fmt: skip
        self.shadow_requests = Counter(
            "serving_shadow_requests", "Mirrored requests run on the shadow version, by outcome.",
            [*mv, "outcome"],
        )  # fmt: skip
        self.shadow_dropped = Counter(
            "serving_shadow_dropped", "Mirrored requests dropped unrun (queue full, target busy or not ready).",
            [*mv, "reason"],
        )  # fmt: skip
        self.shadow_latency = Histogram(
            "serving_shadow_duration_seconds", "Time a mirrored request spent in the shadow version's batcher.",
            mv, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.shadow_agreement = Counter(
            "serving_shadow_agreement", "Rows whose top class the shadow version and the primary agree on.",
            ["model", "primary", "shadow", "result"],
        )  # fmt: skip
        self.shadow_abs_diff = Histogram(
            "serving_shadow_abs_diff", "Mean absolute difference of shadow and primary outputs per request.",
            ["model", "primary", "shadow"], buckets=ERROR_BUCKETS,
        )  # fmt: skip
        # Drift (service/ops/drift.py): per worker (pid label), a score means something beside its window.
        self.drift_score = Gauge(
            "serving_drift_score", "PSI of the recent rows against the training reference, per feature group.",
            [*mv, "feature"], multiprocess_mode="liveall",
        )  # fmt: skip
        self.drift_window_rows = Gauge(
            "serving_drift_window_rows", "Rows in this worker's drift window of a version.", mv,
            multiprocess_mode="liveall",
        )  # fmt: skip
        self.drift_dropped = Counter(
            "serving_drift_dropped_rows",
            "Answered rows not binned for drift (queue full, or not sampled).",
            [*mv, "reason"],
        )
        self.sample_process()
        threading.Thread(target=self._sample_forever, name="process-metrics", daemon=True).start()
        from service.gpu import start_gpu_sampler

        start_gpu_sampler(self)

    def sample_process(self) -> None:
        """Record this process's CPU time and resident memory now."""
        times = os.times()
        self.process_cpu.set(times.user + times.system)
        try:
            with open("/proc/self/statm") as fh:
                self.process_rss.set(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
        except OSError:  # not Linux: no RSS figure
            pass

    def _sample_forever(self, interval_s: float = 5.0) -> None:
        while True:
            time.sleep(interval_s)
            self.sample_process()

    def request_series(self, model: str, version: str, protocol: str) -> RequestSeries:
        """The bound series of a served ``model`` version (registry names only: the cache is bounded by
        the versions and protocols served)."""
        key = (model, version, protocol)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = RequestSeries(
                self.bound(self.inflight, *key),
                self.bound(self.latency, *key),
                self.bound(self.queue, model, version),
                self.bound(self.compute, model, version),
                self.bound(self.requests, *key, "200", "success"),
                self.bound(self.success_seconds, model, version),
            )
        return series

    def bound(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once and written once per loop iteration
        (:mod:`service.metric_buffer`): for the series every answered request touches. Label values
        must come from a bounded set (registry names, route names, status codes)."""
        key = (metric, labels)
        series = self._bound.get(key)
        if series is None:
            series = self._bound[key] = buffered(metric.labels(*labels))
        return series

    def set_state(self, model: str, version: int, state: StrEnum) -> None:
        """Mark ``state`` as the one state of a model version; every other member of its enum
        (:class:`service.models.version.State`) goes to 0."""
        for s in type(state):
            self.model_state.labels(model, str(version), s.value).set(1 if s is state else 0)


@lru_cache(maxsize=1)
def get_metrics() -> Metrics:
    """The process's metrics, created on first use."""
    return Metrics()


def observe_payload(model: str, protocol: str, request_bytes: int, response_bytes: int) -> None:
    """Record the request and response body sizes of one answered request."""
    m = get_metrics()
    m.bound(m.request_bytes, model, protocol).observe(request_bytes)
    m.bound(m.response_bytes, model, protocol).observe(response_bytes)
