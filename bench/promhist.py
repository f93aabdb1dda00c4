"""Server-side latency from our ``serving_request_duration_seconds`` histogram in ``/metrics``.

The buckets are read before and after a run; the difference is the run's own histogram, and its
quantile is estimated the way PromQL's ``histogram_quantile`` does (linear inside the bucket).
"""

from __future__ import annotations

import math
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from bench.procs import http
from service.client.compare import quantile  # histogram_quantile, one implementation for both

METRIC = "serving_request_duration_seconds"
K = TypeVar("K")


def read_buckets(url: str, model: str, protocol: str | None = None) -> dict[float, float]:
    """Cumulative counts by upper bound (``le``), summed over versions (and protocols when None)."""
    return read_histogram(url, model, METRIC, protocol)[0]


def read_histogram(
    url: str, model: str, metric: str, protocol: str | None = None
) -> tuple[dict[float, float], float]:
    """``metric``'s cumulative counts by upper bound (``le``) and its sum, summed over workers and
    versions of ``model`` (and protocols when None)."""
    status, body = http(url.rstrip("/") + "/metrics", timeout=10.0)
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    buckets: dict[float, float] = {}
    total = 0.0
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.labels.get("model") != model or (
                protocol is not None and s.labels.get("protocol") != protocol
            ):
                continue
            if s.name == metric + "_bucket":
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
            elif s.name == metric + "_sum":
                total += s.value
    return buckets, total


def read_codes(url: str, model: str) -> dict[str, float]:
    """Our ``serving_requests_total`` by HTTP code (all protocols and versions of ``model``)."""
    status, body = http(url.rstrip("/") + "/metrics", timeout=10.0)
    codes: dict[str, float] = {}
    if status != 200:
        return codes
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == "serving_requests_total" and s.labels.get("model") == model:
                codes[s.labels.get("code", "?")] = codes.get(s.labels.get("code", "?"), 0.0) + s.value
    return codes


def diff(after: dict[K, float], before: dict[K, float]) -> dict[K, float]:
    return {le: after[le] - before.get(le, 0.0) for le in after}


def server_side_ms(before: dict[float, float], after: dict[float, float]) -> dict[str, float | None]:
    """p50/p99 (ms) and the request count of the run between two bucket readings."""
    run = diff(after, before)
    count = run.get(math.inf, 0.0)
    p50, p99 = quantile(0.5, run), quantile(0.99, run)
    return {
        "count": count,
        "p50_ms": None if p50 is None else p50 * 1000,
        "p99_ms": None if p99 is None else p99 * 1000,
        "buckets": {("+Inf" if math.isinf(k) else f"{k:g}"): v for k, v in sorted(run.items())},
    }
