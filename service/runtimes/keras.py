"""Keras 3 on JAX: the ``.keras`` file, jit-compiled. Optional (``pip install .[jax]``).

Meant for accelerators where ONNX Runtime's GPU build is absent. The Keras backend is fixed per process
when Keras is first imported, so this runtime sets ``KERAS_BACKEND=jax`` before importing it and refuses
to run when Keras was already imported with another backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from service.runtimes.base import PLATFORMS, ArtifactError, Batch, Runtime


class KerasRuntime(Runtime):
    """Runs ``model.keras`` with a jit-compiled forward pass on the JAX backend."""

    name = "keras"
    platform = PLATFORMS["keras"]

    _model: Any = None
    _forward: Callable[..., Any] | None = None

    def load(self) -> None:
        self.verify("model.keras")
        os.environ.setdefault("KERAS_BACKEND", "jax")
        try:
            import jax
            import keras
        except ImportError as exc:
            raise ArtifactError("the keras runtime needs JAX: pip install '.[jax]'") from exc
        if keras.backend.backend() != "jax":
            raise ArtifactError(
                f"keras was imported with backend {keras.backend.backend()!r}; start with KERAS_BACKEND=jax"
            )
        try:
            self._model = keras.saving.load_model(
                self.directory / "model.keras", compile=False, safe_mode=True
            )
        except Exception as exc:
            raise ArtifactError(f"model.keras cannot be loaded: {exc}") from exc
        model = self._model
        state = [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]

        def forward(trainable: Any, non_trainable: Any, x: Any) -> Any:
            out, _ = model.stateless_call(trainable, non_trainable, x, training=False)
            return out

        self._state = state
        self._forward = jax.jit(forward)
        self._device = str(jax.devices()[0])

    def predict(self, inputs: Batch) -> Batch:
        """Run a batch padded to the next power of two, so jit compiles a handful of shapes, not one per size."""
        if self._model is None or self._forward is None:
            raise RuntimeError("predict() before load()")
        names = [i.name for i in self.metadata.inputs]
        rows = len(inputs[names[0]])
        padded = 1 << max(rows - 1, 0).bit_length()
        arrays = [_pad(inputs[n], padded) for n in names]
        out = self._forward(*self._state, arrays[0] if len(arrays) == 1 else arrays)
        outs = out if isinstance(out, list | tuple) else [out]
        return {spec.name: np.asarray(o)[:rows] for spec, o in zip(self.metadata.outputs, outs, strict=True)}

    def unload(self) -> None:
        self._model = None
        self._forward = None

    @property
    def provider(self) -> str:
        return getattr(self, "_device", "none")


def _pad(array: np.ndarray, rows: int) -> np.ndarray:
    if len(array) == rows:
        return array
    return np.concatenate([array, np.zeros((rows - len(array), *array.shape[1:]), array.dtype)])
