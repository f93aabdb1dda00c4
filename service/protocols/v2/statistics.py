"""Triton's statistics extension: per model version counts and cumulative times, for REST and gRPC.

``GET /v2/models[/{model}[/versions/{version}]]/stats`` and gRPC ``ModelStatistics`` answer Triton's
``ModelStatistics`` document, as tritonclient's ``get_inference_statistics`` reads it, built from the
server's own metrics summed over its workers (:mod:`service.metric_totals`), so every worker gives the
same figures:

- ``success``: answered requests and their time in the server (``serving_request_success_seconds``);
  ``fail``: every other outcome that reached a version (errors, rejections, deadlines, cancellations)
  and the rest of ``serving_request_duration_seconds``;
- ``queue`` and ``compute_infer``: the requests that ran, with their wait for a batch and the runtime
  time of the batch each ran in (``serving_queue_duration_seconds``, ``serving_compute_duration_seconds``);
- ``inference_count`` (rows) and ``execution_count`` (runtime calls) from ``serving_batch_size``;
- ``last_inference``: milliseconds since the epoch at the end of the latest runtime call on any worker
  (``serving_last_inference_timestamp_seconds``), 0 before the first.

Not recorded, so zero: ``compute_input`` / ``compute_output`` (decoding and encoding happen in the
protocol adapters, outside the version's time) and the cache (there is none); ``batch_stats`` is empty
(the batch-size histogram has buckets, not sizes).
"""

from __future__ import annotations

from typing import Any

from service.dataplane import DataPlane
from service.metric_totals import Key, totals

NAMES = (
    "serving_requests_total",
    "serving_request_duration_seconds_sum",
    "serving_request_success_seconds_total",
    "serving_queue_duration_seconds_count",
    "serving_queue_duration_seconds_sum",
    "serving_compute_duration_seconds_count",
    "serving_compute_duration_seconds_sum",
    "serving_batch_size_count",
    "serving_batch_size_sum",
    "serving_last_inference_timestamp_seconds",
)
_NONE = {"count": 0, "ns": 0}


def targets(dataplane: DataPlane, name: str | None, version: int | None) -> list[tuple[str, int]]:
    """The versions asked for: every version of every model, of ``name``, or one (404 for unknown ones)."""
    if name is None:
        return [(n, v.version) for n in dataplane.model_names() for v in dataplane.versions(n)]
    if version is None:
        return [(name, v.version) for v in dataplane.versions(name)]
    return [(name, dataplane.find(name, version).version)]


def model_statistics(versions: list[tuple[str, int]]) -> dict[str, Any]:
    """The ``ModelStatistics`` document of ``versions`` (reads every worker's metric files: off the loop)."""
    summed = totals(NAMES)
    return {"model_stats": [_version_stats(summed, name, str(v)) for name, v in versions]}


def _version_stats(summed: dict[Key, float], name: str, version: str) -> dict[str, Any]:
    mine = {(n, o): value for (n, m, v, o), value in summed.items() if m == name and v == version}

    def total(sample: str, outcome: str | None = None) -> float:
        return sum(value for (n, o), value in mine.items() if n == sample and outcome in (None, o))

    def duration(count: float, seconds: float) -> dict[str, int]:
        return {"count": round(count), "ns": max(round(seconds * 1e9), 0)}

    answered = total("serving_requests_total", "success")
    success_s = total("serving_request_success_seconds_total")
    return {
        "name": name,
        "version": version,
        "last_inference": round(total("serving_last_inference_timestamp_seconds") * 1000),
        "inference_count": round(total("serving_batch_size_sum")),
        "execution_count": round(total("serving_batch_size_count")),
        "inference_stats": {
            "success": duration(answered, success_s),
            "fail": duration(
                total("serving_requests_total") - answered,
                total("serving_request_duration_seconds_sum") - success_s,
            ),
            "queue": duration(
                total("serving_queue_duration_seconds_count"), total("serving_queue_duration_seconds_sum")
            ),
            "compute_input": dict(_NONE),
            "compute_infer": duration(
                total("serving_compute_duration_seconds_count"),
                total("serving_compute_duration_seconds_sum"),
            ),
            "compute_output": dict(_NONE),
            "cache_hit": dict(_NONE),
            "cache_miss": dict(_NONE),
        },
        "batch_stats": [],
    }
