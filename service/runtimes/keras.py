"""Keras 3 on JAX: the ``.keras`` file, jit-compiled, on the best JAX device. Optional (``pip install .[jax]``).

Meant for accelerators where ONNX Runtime's GPU build is absent. The Keras backend is fixed per process
when Keras is first imported, so this runtime sets ``KERAS_BACKEND=jax`` before importing it and refuses
to run when Keras was already imported with another backend.

**Fixed batch buckets.** XLA compiles one program per input shape, and a compile takes from a few hundred
milliseconds (CPU) to seconds (GPU). A batch is therefore zero-padded to the smallest bucket of
:data:`BUCKETS` that holds it, the list being cut at the model's ``max_batch_size`` (which becomes the last
bucket), and :meth:`KerasRuntime.load` compiles every bucket, so no request ever waits for a compile:
``jax.jit``'s cache holds exactly one entry per bucket after loading, whatever batch sizes arrive (held by
``tests/service/runtimes/test_keras_buckets.py``). A batch larger than the last bucket (the batcher never
sends one) runs in chunks of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from service.runtimes.base import PLATFORMS, ArtifactError, Batch, Runtime
from service.schema import ModelMetadata

BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
"""Batch sizes the runtime compiles, up to the model's ``max_batch_size``."""


def batch_buckets(max_batch_size: int) -> list[int]:
    """The buckets for a model: :data:`BUCKETS` below ``max_batch_size``, then ``max_batch_size`` itself."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
    return [b for b in BUCKETS if b < max_batch_size] + [max_batch_size]


def bucket_for(rows: int, buckets: list[int]) -> int:
    """The smallest bucket that holds ``rows`` (at most the last one)."""
    return next((b for b in buckets if b >= rows), buckets[-1])


def describe_device(device: Any) -> str:
    """A JAX device as the provider label: ``GPU:0 NVIDIA H200``, ``CPU:0``."""
    kind = str(getattr(device, "device_kind", "") or "")
    name = f"{device.platform.upper()}:{device.id}"
    return f"{name} {kind}" if kind and kind.lower() != device.platform.lower() else name


class KerasRuntime(Runtime):
    """Runs ``model.keras`` with a jit-compiled forward pass on the JAX backend, in fixed batch buckets."""

    name = "keras"
    platform = PLATFORMS["keras"]

    _model: Any = None
    _forward: Callable[..., Any] | None = None

    def __init__(self, directory: Path, metadata: ModelMetadata, max_batch_size: int = 64) -> None:
        super().__init__(directory, metadata)
        self.buckets = batch_buckets(max_batch_size)

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
        self._device = describe_device(jax.devices()[0])
        for rows in self.buckets:  # compile every bucket now, so no request waits for XLA
            self._run(self._zeros(rows))

    @property
    def compiled_shapes(self) -> int:
        """How many programs ``jax.jit`` holds (one per bucket once loaded)."""
        return int(self._forward._cache_size()) if self._forward is not None else 0  # type: ignore[attr-defined]

    def predict(self, inputs: Batch) -> Batch:
        """Run a batch padded to its bucket; a batch above the last bucket runs in chunks of it."""
        if self._model is None or self._forward is None:
            raise RuntimeError("predict() before load()")
        names = [i.name for i in self.metadata.inputs]
        rows = len(inputs[names[0]])
        step = self.buckets[-1]
        parts = [self._run([inputs[n][i : i + step] for n in names]) for i in range(0, rows, step)]
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _run(self, arrays: list[np.ndarray]) -> Batch:
        """One forward pass of at most the last bucket's rows, padded to its bucket."""
        assert self._forward is not None
        rows = len(arrays[0])
        padded = [_pad(a, bucket_for(rows, self.buckets)) for a in arrays]
        out = self._forward(*self._state, padded[0] if len(padded) == 1 else padded)
        outs = out if isinstance(out, list | tuple) else [out]
        return {spec.name: np.asarray(o)[:rows] for spec, o in zip(self.metadata.outputs, outs, strict=True)}

    def _zeros(self, rows: int) -> list[np.ndarray]:
        return [
            np.zeros((rows, *(max(d, 1) for d in spec.shape[1:])), spec.dtype)
            for spec in self.metadata.inputs
        ]

    def unload(self) -> None:
        self._model = None
        self._forward = None

    @property
    def provider(self) -> str:
        """The JAX device the model runs on (``GPU:0 NVIDIA H200``, ``CPU:0``)."""
        return getattr(self, "_device", "none")


def _pad(array: np.ndarray, rows: int) -> np.ndarray:
    if len(array) == rows:
        return array
    return np.concatenate([array, np.zeros((rows - len(array), *array.shape[1:]), array.dtype)])
