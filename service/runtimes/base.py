"""The small interface every runtime implements, and the factory that picks one.

A runtime is always handed a whole batch as ``dict[input name, np.ndarray]`` and returns
``dict[output name, np.ndarray]`` with the same leading dimension. It knows nothing about batching,
protocols or metrics; :mod:`service.batching` and :mod:`service.dataplane` do that.
"""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from service.schema import ModelMetadata

Batch = dict[str, np.ndarray]
PLATFORMS = {
    "onnx": "onnx_onnxv1",
    "tensorflow": "tensorflow_savedmodel",
    "keras": "keras_jax",
    "openvino": "openvino_onnx",
}
"""Runtime name -> the platform name V2 metadata reports (also for a version whose runtime is not built)."""


class ArtifactError(RuntimeError):
    """An artifact is missing, does not match its recorded checksum, or cannot be loaded."""


class Runtime(ABC):
    """Loads one model version and runs batches on it."""

    name: str = "base"
    platform: str = "unknown"
    precision: str = "fp32"
    """The numeric precision really in use (fp32, int8, bf16); fixed once loaded."""
    inline_ok: bool = False
    """Whether short batches may run on the event loop (``inline_run_us``): a CPU runtime whose calls
    take a steady time. Accelerators (an engine built on a new shape, a device sync) and the Python
    frameworks (retracing) stay on the runtime thread."""
    computes_on_caller: bool = False
    """Whether a call computes on the calling thread alone (no pool of its own), so that thread's CPU
    time is what the call costs, whatever else competes for the core."""
    load_lock: ClassVar[threading.Lock | None] = None
    """Held over :meth:`load` and the warm-up batches, so versions of this runtime load one at a time in
    a process (``None``: they load in parallel)."""

    def __init__(self, directory: Path, metadata: ModelMetadata) -> None:
        self.directory = directory
        self.metadata = metadata

    @abstractmethod
    def load(self) -> None:
        """Open the artifact; raise :class:`ArtifactError` when it cannot be used."""

    @abstractmethod
    def predict(self, inputs: Batch) -> Batch:
        """Run one batch; called from a worker thread, never concurrently for one instance."""

    def unload(self) -> None:  # noqa: B027 - optional hook; default keeps nothing to release
        """Release what :meth:`load` took."""

    @property
    def provider(self) -> str:
        """The device or execution provider in use (reported in metadata and metrics)."""
        return "CPU"

    def verify(self, *relative_paths: str) -> None:
        """Check the recorded sha256 of each artifact file under ``relative_paths`` (files or folders)."""
        recorded = self.metadata.artifacts
        for rel in relative_paths:
            wanted = [p for p in recorded if p == rel or p.startswith(rel.rstrip("/") + "/")]
            if not wanted:
                raise ArtifactError(f"metadata.json records no checksum for {rel}")
            for path in wanted:
                file = self.directory / path
                if not file.is_file():
                    raise ArtifactError(f"artifact missing: {path}")
                digest = hashlib.sha256(file.read_bytes()).hexdigest()
                if digest != recorded[path]:
                    raise ArtifactError(f"artifact corrupt: {path} does not match its recorded sha256")


def variant_file(metadata: ModelMetadata, precision: str) -> str:
    """The ONNX file that serves ``precision``: ``model.onnx`` for fp32, else the exported variant's file.

    Raises :class:`ArtifactError` saying how to export a variant that ``metadata.json`` does not record, or
    why the exporter left it out (its accuracy gate)."""
    if precision == "fp32":
        return "model.onnx"
    where = f"model {metadata.name} version {metadata.version} has no {precision} variant"
    variant = metadata.variants.get(precision)
    if variant is None:
        raise ArtifactError(
            f"{where} (metadata.json records none): export one with `python -m training train --models "
            f"{metadata.name} --variants {precision}`, or serve it with precision fp32"
        )
    if not variant.exported or not variant.file:
        raise ArtifactError(
            f"{where}: the exporter left it out ({variant.reason}); serve it with precision fp32"
        )
    return variant.file


def with_precision(provider: str, precision: str) -> str:
    """The provider text of a runtime: the device or provider, then the precision unless it is fp32."""
    return provider if precision == "fp32" else f"{provider} {precision}"
