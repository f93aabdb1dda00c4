"""Pick and build a runtime by name; heavy frameworks are imported only when their runtime is asked for.

Building never imports a framework, so a runtime whose framework is not installed (TensorFlow in the
serving image, JAX without the ``jax`` extra) fails in its ``load()`` with a message naming what to
install, and only that version is marked failed."""

from __future__ import annotations

from pathlib import Path

from service.runtimes.base import ArtifactError, Runtime
from service.runtimes.providers import ProviderOptions
from service.schema import ModelMetadata


def create_runtime(
    kind: str,
    directory: Path,
    metadata: ModelMetadata,
    providers: list[str],
    threads: int,
    *,
    provider_options: ProviderOptions | None = None,
    max_batch_size: int = 64,
    precision: str = "fp32",
) -> Runtime:
    """Build (not load) the runtime ``kind``; heavy frameworks are imported only when asked for.

    ``provider_options``: ONNX Runtime's strictness and TensorRT options; ``max_batch_size``: the most rows
    the batcher hands over at once (the Keras runtime compiles its batch buckets up to it); ``precision``:
    fp32, int8 or bf16 (onnx and openvino only; the others fail the load for anything but fp32)."""
    if kind == "onnx":
        from service.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(
            directory,
            metadata,
            providers=providers,
            threads=threads,
            options=provider_options,
            precision=precision,
        )
    if kind == "openvino":
        from service.runtimes.openvino import OpenVinoRuntime

        return OpenVinoRuntime(directory, metadata, threads=threads, precision=precision)
    if precision != "fp32":
        raise ArtifactError(
            f"runtime {kind} serves fp32 only; precision {precision} needs runtime onnx or openvino"
        )
    if kind == "tensorflow":
        from service.runtimes.tensorflow import TensorflowRuntime

        return TensorflowRuntime(directory, metadata)
    if kind == "keras":
        from service.runtimes.keras import KerasRuntime

        return KerasRuntime(directory, metadata, max_batch_size=max_batch_size)
    raise ValueError(f"unknown runtime {kind!r}; expected onnx, tensorflow, keras or openvino")
