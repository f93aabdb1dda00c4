"""TensorFlow: the SavedModel's ``serving_default`` signature. TensorFlow is imported on first use only.

TensorFlow is the ``tensorflow`` extra; where it is missing (the serving image), loading fails with
:data:`TENSORFLOW_MISSING`, which the version shows as its error (``failed``).

TensorFlow places the model on the first visible GPU by itself; before the first load, memory growth is
enabled on every visible GPU (:func:`enable_memory_growth`), so TensorFlow takes GPU memory as it needs it
instead of all of it at once (which would starve other models and runtimes in the same process or on the
same card). Without a GPU that is a no-op and the model runs on the CPU."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from service.runtimes.base import PLATFORMS, ArtifactError, Batch, Runtime

log = logging.getLogger("service.runtimes")

TENSORFLOW_MISSING = (
    "the tensorflow runtime needs TensorFlow, which is not installed here (the serving image leaves it out): "
    "pip install 'keras-serving[tensorflow]' or use the training image, or serve this model with runtime "
    "onnx or keras"
)


def enable_memory_growth(tf: Any) -> list[str]:
    """Turn on memory growth for every visible GPU; returns their names (empty without a GPU).

    It must happen before TensorFlow initialises the GPUs; once they are (an earlier load in this process
    did it), the setting already holds and TensorFlow's ``RuntimeError`` is ignored."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # GPUs already initialised, with growth set by the first load
            log.debug("memory growth of %s was set before TensorFlow initialised it", gpu.name)
    return [gpu.name for gpu in gpus]


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
        gpus = enable_memory_growth(tf)
        self._device = "GPU:0" if gpus else "CPU"
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

    @property
    def provider(self) -> str:
        """``GPU:0`` when TensorFlow sees a GPU (it places the model there), else ``CPU``."""
        return getattr(self, "_device", "none")
