"""TensorFlow: the SavedModel's ``serving_default`` signature. TensorFlow is imported on first use only.

TensorFlow is the ``tensorflow`` extra; where it is missing (the serving image), loading fails with
:data:`TENSORFLOW_MISSING`, which the version shows as its error (``failed``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.runtimes.base import PLATFORMS, ArtifactError, Batch, Runtime

TENSORFLOW_MISSING = (
    "the tensorflow runtime needs TensorFlow, which is not installed here (the serving image leaves it out): "
    "pip install 'keras-serving[tensorflow]' or use the training image, or serve this model with runtime "
    "onnx or keras"
)


class TensorflowRuntime(Runtime):
    """Runs ``saved_model/`` through its serving signature."""

    name = "tensorflow"
    platform = PLATFORMS["tensorflow"]

    _fn: Any = None

    def _signature_names(self, kind: str) -> dict[str, str]:
        extra = (self.metadata.model_extra or {}).get("saved_model_signature") or {}
        return dict(extra.get(kind) or {})

    def load(self) -> None:
        try:
            import tensorflow as tf
        except ImportError as exc:  # the serving image leaves TensorFlow out
            raise ArtifactError(TENSORFLOW_MISSING) from exc
        self.verify("saved_model")
        try:
            loaded = tf.saved_model.load(str(self.directory / "saved_model"))
            self._fn = loaded.signatures["serving_default"]
        except Exception as exc:
            raise ArtifactError(f"saved_model cannot be loaded: {exc}") from exc
        self._loaded = loaded  # keep the trackable alive while the signature is used
        self._tf = tf
        self._in_names = self._signature_names("inputs")
        self._out_names = self._signature_names("outputs")

    def predict(self, inputs: Batch) -> Batch:
        if self._fn is None:
            raise RuntimeError("predict() before load()")
        tf = self._tf
        feed = {self._in_names.get(k, k): tf.constant(v) for k, v in inputs.items()}
        result = self._fn(**feed)
        outputs: Batch = {}
        for spec in self.metadata.outputs:
            key = self._out_names.get(spec.name, spec.name)
            if key not in result and len(result) == 1:
                key = next(iter(result))
            outputs[spec.name] = np.asarray(result[key].numpy())
        return outputs

    def unload(self) -> None:
        self._fn = None
        self._loaded = None
