"""PyTriton 0.7.0 peer: the CNN behind the bundled Triton server, with Triton's dynamic batching.

Runs in its own venv (``bench/.venvs/pytriton``). The infer function runs ONNX Runtime on each batch
Triton's dynamic batcher forms (up to 64 rows, or ``BENCH_MAX_BATCH``; 100 µs queue delay). Configuration comes from the
``BENCH_*`` environment variables the harness sets; ``LD_LIBRARY_PATH`` must include this
interpreter's lib folder (PyTriton's helper links libpython). Clients use Triton's V2 HTTP API.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, Tensor, TimeoutAction
from pytriton.triton import Triton, TritonConfig

INSTANCES = int(os.environ.get("BENCH_INSTANCES", "1"))
MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "64"))
QUEUE_DELAY_MS = float(
    os.environ.get("BENCH_QUEUE_DELAY_MS", "0")
)  # > 0: Triton's queue policy rejects after


def batcher() -> DynamicBatcher:
    """Dynamic batching (100 µs); with ``BENCH_QUEUE_DELAY_MS``, Triton's queue policy: a request queued
    longer than that is rejected (``timeout_action: REJECT``), the anchor of the overload benchmark."""
    policy = None
    if QUEUE_DELAY_MS > 0:
        policy = QueuePolicy(
            timeout_action=TimeoutAction.REJECT, default_timeout_microseconds=int(QUEUE_DELAY_MS * 1000)
        )
    return DynamicBatcher(max_queue_delay_microseconds=100, default_queue_policy=policy)


def make_infer(session: ort.InferenceSession, input_name: str, output_name: str) -> Any:
    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        x = inputs[input_name].astype(np.float32, copy=False)
        return {output_name: session.run([output_name], {input_name: x})[0]}

    return infer


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    path = os.environ["BENCH_MODEL_PATH"]
    input_name, output_name = os.environ["BENCH_INPUT"], os.environ["BENCH_OUTPUT"]
    shape = tuple(json.loads(os.environ.get("BENCH_INPUT_SHAPE", "[28, 28, 1]")))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sessions = [
        ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"]) for _ in range(INSTANCES)
    ]
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=int(os.environ["BENCH_PORT"]),
        grpc_address="127.0.0.1",
        grpc_port=int(os.environ["BENCH_GRPC_PORT"]),
        metrics_address="127.0.0.1",
        metrics_port=int(os.environ["BENCH_METRICS_PORT"]),
        exit_timeout_secs=5,
    )
    with Triton(config=config, workspace=Path(os.environ["BENCH_WORKSPACE"])) as triton:
        triton.bind(
            model_name=os.environ.get("BENCH_MODEL_NAME", "cnn"),
            infer_func=[make_infer(s, input_name, output_name) for s in sessions],
            inputs=[Tensor(name=input_name, dtype=np.float32, shape=shape)],
            outputs=[Tensor(name=output_name, dtype=np.float32, shape=(-1,))],
            config=ModelConfig(max_batch_size=MAX_BATCH, batcher=batcher()),
            strict=False,
        )
        triton.serve()


if __name__ == "__main__":
    main()
