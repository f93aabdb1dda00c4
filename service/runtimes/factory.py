"""Pick and build a runtime by name; heavy frameworks are imported only when their runtime is asked for.

Building never imports a framework, so a runtime whose framework is not installed (TensorFlow in the
serving image, JAX without the ``jax`` extra) fails in its ``load()`` with a message naming what to
install, and only that version is marked failed."""

from __future__ import annotations

from pathlib import Path

from service.runtimes.base import Runtime
from service.schema import ModelMetadata


def create_runtime(
    kind: str, directory: Path, metadata: ModelMetadata, providers: list[str], threads: int
) -> Runtime:
    """Build (not load) the runtime ``kind``; heavy frameworks are imported only when asked for."""
    if kind == "onnx":
        from service.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(directory, metadata, providers=providers, threads=threads)
    if kind == "tensorflow":
        from service.runtimes.tensorflow import TensorflowRuntime

        return TensorflowRuntime(directory, metadata)
    if kind == "keras":
        from service.runtimes.keras import KerasRuntime

        return KerasRuntime(directory, metadata)
    raise ValueError(f"unknown runtime {kind!r}; expected onnx, tensorflow or keras")
