"""A naive BentoML service for the CNN, written the way a tutorial would.

One ``@bentoml.api(batchable=True)`` method taking a numpy array (JSON body ``{"pixels": [...]}``),
BentoML's adaptive batching with its defaults, ONNX Runtime with its defaults. Nothing is tuned.

Run: ``BENCH_MODEL_PATH=models/cnn/1/model.onnx bentoml serve bench.peers.naive_bentoml:NaiveCNN``.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np


@bentoml.service(workers=int(os.environ.get("BENCH_WORKERS", "2")))
class NaiveCNN:
    def __init__(self) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(os.environ["BENCH_MODEL_PATH"])
        self.input_name = self.session.get_inputs()[0].name

    @bentoml.api(batchable=True)
    def predict(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: pixels.astype(np.float32)})[0]
