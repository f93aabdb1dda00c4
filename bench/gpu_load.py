"""The two measurements of ``bench/gpu.py``: raw Keras ``predict_on_batch`` and the service over V2 binary.

Both report images/s and per-call latency (p50, p99) for one batch size. The service is driven closed-loop
by ``concurrency`` threads, each with its own keep-alive HTTP connection, all sending the same prepared
body (the V2 binary tensor extension, :func:`bench.bodies.v2_binary_body`); the answers come back binary.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import asdict, dataclass
from time import perf_counter
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Point:
    """One measured batch size of one side (``raw`` or ``service``)."""

    side: str
    batch: int
    calls: int
    seconds: float
    images_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    concurrency: int = 1

    @classmethod
    def of(cls, side: str, batch: int, latencies: list[float], seconds: float, **extra: Any) -> Point:
        ms = np.asarray(latencies) * 1000.0
        return cls(
            side=side,
            batch=batch,
            calls=len(latencies),
            seconds=round(seconds, 3),
            images_per_s=round(len(latencies) * batch / seconds, 1),
            p50_ms=round(float(np.percentile(ms, 50)), 3),
            p99_ms=round(float(np.percentile(ms, 99)), 3),
            **extra,
        )

    def row(self) -> dict[str, Any]:
        return asdict(self)


def measure_raw(model: Any, x: np.ndarray, seconds: float, warmup: int = 3) -> Point:
    """``model.predict_on_batch(x)`` back to back for ``seconds`` (after ``warmup`` calls that compile)."""
    for _ in range(warmup):
        model.predict_on_batch(x)
    latencies: list[float] = []
    start = perf_counter()
    while perf_counter() - start < seconds or len(latencies) < 3:
        t0 = perf_counter()
        model.predict_on_batch(x)
        latencies.append(perf_counter() - t0)
    return Point.of("raw", len(x), latencies, perf_counter() - start)


def decode_v2_binary(body: bytes, header_length: int) -> np.ndarray:
    """The first output of a V2 binary answer as a float32 array."""
    header = json.loads(body[:header_length])
    output = header["outputs"][0]
    size = output["parameters"]["binary_data_size"]
    raw = body[header_length : header_length + size]
    return np.frombuffer(raw, "<f4").reshape(output["shape"])


class V2Client:
    """One keep-alive connection to the service, posting one prepared V2 binary body."""

    def __init__(self, port: int, path: str, body: bytes, header_length: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.path, self.body = path, body
        self.headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(header_length),
        }

    def post(self) -> tuple[int, bytes, int]:
        """(status, body, header length of the answer)."""
        self.conn.request("POST", self.path, self.body, self.headers)
        answer = self.conn.getresponse()
        data = answer.read()
        return answer.status, data, int(answer.getheader("Inference-Header-Content-Length") or 0)

    def close(self) -> None:
        self.conn.close()


def measure_service(
    port: int, path: str, body: bytes, header_length: int, batch: int, seconds: float, concurrency: int
) -> Point:
    """``concurrency`` clients posting the body back to back for ``seconds``; non-200 answers are errors."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    deadline = perf_counter() + seconds
    start = perf_counter()

    def client(i: int) -> None:
        conn = V2Client(port, path, body, header_length)
        try:
            while perf_counter() < deadline or not latencies[i]:
                t0 = perf_counter()
                status, _, _ = conn.post()
                if status == 200:
                    latencies[i].append(perf_counter() - t0)
                else:
                    errors[i] += 1
                    if errors[i] > 100:
                        return
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = perf_counter() - start
    merged = [t for per_client in latencies for t in per_client]
    if not merged:
        raise RuntimeError(f"no request of batch {batch} was answered 200 ({sum(errors)} errors)")
    return Point.of("service", batch, merged, elapsed, errors=sum(errors), concurrency=concurrency)
