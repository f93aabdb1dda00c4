"""A custom MLServer runtime for an ONNX model (MLServer 1.7.1; runs in its own venv).

``mlserver start <folder>`` loads it from ``model-settings.json`` (``implementation: model.OnnxModel``);
adaptive batching (``max_batch_size``/``max_batch_time`` there) hands it whole merged batches.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    """Runs every request (or merged batch) through one ONNX Runtime session."""

    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(uri, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        y = self.session.run([self.output_name], {self.input_name: x})[0]
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(self.output_name, y)],
        )
