"""The small interface every runtime implements, and the factory that picks one.

A runtime is always handed a whole batch as ``dict[input name, np.ndarray]`` and returns
``dict[output name, np.ndarray]`` with the same leading dimension. It knows nothing about batching,
protocols or metrics; :mod:`service.batching` and :mod:`service.dataplane` do that.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from service.schema import ModelMetadata

Batch = dict[str, np.ndarray]
PLATFORMS = {"onnx": "onnx_onnxv1", "tensorflow": "tensorflow_savedmodel", "keras": "keras_jax"}
"""Runtime name -> the platform name V2 metadata reports (also for a version whose runtime is not built)."""


class ArtifactError(RuntimeError):
    """An artifact is missing, does not match its recorded checksum, or cannot be loaded."""


class Runtime(ABC):
    """Loads one model version and runs batches on it."""

    name: str = "base"
    platform: str = "unknown"

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
