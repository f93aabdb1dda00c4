"""ONNX Runtime: the default runtime (CPU, CUDA or TensorRT execution providers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.runtimes.base import PLATFORMS, ArtifactError, Batch, Runtime
from service.schema import ModelMetadata


class OnnxRuntime(Runtime):
    """Runs ``model.onnx`` with the first available providers of the configured order."""

    name = "onnx"
    platform = PLATFORMS["onnx"]

    def __init__(self, directory: Path, metadata: ModelMetadata, providers: list[str], threads: int) -> None:
        super().__init__(directory, metadata)
        self.wanted_providers = providers
        self.threads = threads
        self._session: ort.InferenceSession | None = None
        self._output_names = [o.name for o in metadata.outputs]

    def load(self) -> None:
        self.verify("model.onnx")
        available = set(ort.get_available_providers())
        providers = [p for p in self.wanted_providers if p in available] or ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                str(self.directory / "model.onnx"), sess_options=options, providers=providers
            )
        except Exception as exc:  # ORT raises its own exception types for corrupt graphs
            raise ArtifactError(f"model.onnx cannot be loaded: {exc}") from exc
        graph_inputs = {i.name for i in self._session.get_inputs()}
        missing = [i.name for i in self.metadata.inputs if i.name not in graph_inputs]
        if missing:
            raise ArtifactError(
                f"model.onnx has no input named {missing}; graph inputs are {sorted(graph_inputs)}"
            )

    def predict(self, inputs: Batch) -> Batch:
        if self._session is None:
            raise RuntimeError("predict() before load()")
        results = self._session.run(self._output_names, inputs)
        return dict(zip(self._output_names, (np.asarray(r) for r in results), strict=True))

    def unload(self) -> None:
        self._session = None

    @property
    def provider(self) -> str:
        if self._session is None:
            return "none"
        return self._session.get_providers()[0]
