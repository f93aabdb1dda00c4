"""The in-process ceiling: ONNX Runtime alone, one intra-op thread, batch 1 and batch 64."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from bench.bodies import ModelInfo, sample_images


def ort_ceiling(
    model: ModelInfo, batches: tuple[int, ...] = (1, 64), seconds: float = 3.0
) -> list[dict[str, Any]]:
    """Per-call and per-image time and images/s of ``session.run`` for each batch size."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model.onnx_path), opts, providers=["CPUExecutionProvider"])
    rows = []
    for n in batches:
        feed = {model.input_name: sample_images(model, n)}
        for _ in range(20):
            session.run(None, feed)
        times: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - t)
        median = statistics.median(times)
        rows.append({
            "batch": n,
            "calls": len(times),
            "call_median_ms": median * 1000,
            "call_p99_ms": float(np.percentile(times, 99)) * 1000,
            "per_image_us": median / n * 1e6,
            "images_per_s": n / median,
        })  # fmt: skip
    return rows
