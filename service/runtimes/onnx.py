"""ONNX Runtime: the default runtime (CPU, CUDA or TensorRT execution providers).

Which providers a session asks for, TensorRT's options and the fallback or strict failure for a missing
one are :mod:`service.runtimes.providers`; :attr:`OnnxRuntime.provider` is the one the session really runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.runtimes.base import PLATFORMS, ArtifactError, Batch, Runtime, variant_file, with_precision
from service.runtimes.providers import (
    TENSORRT,
    ProviderOptions,
    ProviderSpec,
    check_in_use,
    choose,
    engine_cache,
    provider_name,
)
from service.schema import ModelMetadata

DISABLED_OPTIMIZERS = ["QDQPropagationTransformer"]
"""Graph optimizations every session of ours leaves out. ONNX Runtime's QDQ propagation moves a
QuantizeLinear up through the data-movement nodes before it (Reshape, Transpose, MaxPool), so that they
run on uint8. On the int8 CNN that puts the quantize step before the MaxPool, which then runs without
ONNX Runtime's blocked (NCHWc) float layout: measured one thread on the AMX Xeon, batch 64, the pool
took 1.85 ms instead of 0.27 ms and the variant ran at 15,500 images/s instead of 78,200. Float graphs
have no QDQ nodes, so for them this changes nothing."""

BF16_REFUSED = (
    "runtime onnx has no bf16 precision (ONNX Runtime runs model.onnx in fp32 or model.int8.onnx in int8): "
    "serve bf16 with runtime openvino, or choose precision fp32 or int8"
)


def open_session(
    path: Path, options: ort.SessionOptions | None = None, providers: list[ProviderSpec] | None = None
) -> ort.InferenceSession:
    """An ONNX Runtime session as the server runs one: :data:`DISABLED_OPTIMIZERS` left out (the
    exporter's accuracy gate evaluates its variants through this too)."""
    return ort.InferenceSession(
        str(path),
        sess_options=options,
        providers=providers or ["CPUExecutionProvider"],
        disabled_optimizers=DISABLED_OPTIMIZERS,
    )


class OnnxRuntime(Runtime):
    """Runs ``model.onnx`` with the first available providers of the configured order."""

    name = "onnx"
    platform = PLATFORMS["onnx"]

    def __init__(
        self,
        directory: Path,
        metadata: ModelMetadata,
        providers: list[str],
        threads: int,
        options: ProviderOptions | None = None,
        precision: str = "fp32",
    ) -> None:
        super().__init__(directory, metadata)
        self.precision = precision
        self.wanted_providers = providers
        self.threads = threads
        self.options = options or ProviderOptions()
        self._where = f" (model {metadata.name} version {metadata.version})"
        self._session: ort.InferenceSession | None = None
        self._output_names = [o.name for o in metadata.outputs]

    def load(self) -> None:
        if self.precision == "bf16":
            raise ArtifactError(BF16_REFUSED)
        model_file = variant_file(self.metadata, self.precision)  # model.onnx, or model.int8.onnx for int8
        self.verify(model_file)
        providers = self._providers()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = open_session(self.directory / model_file, options, providers)
        except Exception as exc:  # ORT raises its own exception types for corrupt graphs
            raise ArtifactError(f"{model_file} cannot be loaded: {exc}") from exc
        check_in_use(providers, self._session.get_providers(), self.options, self._where)
        graph_inputs = {i.name for i in self._session.get_inputs()}
        missing = [i.name for i in self.metadata.inputs if i.name not in graph_inputs]
        if missing:
            raise ArtifactError(
                f"model.onnx has no input named {missing}; graph inputs are {sorted(graph_inputs)}"
            )

    def _providers(self) -> list[ProviderSpec]:
        """The configured providers this build has (CPU last), TensorRT with its options and cache folder."""
        cache = engine_cache(self.options, self.metadata.name, self.metadata.version)
        providers = choose(
            self.wanted_providers,
            ort.get_available_providers(),
            ort.get_all_providers(),
            self.options,
            cache,
            self._where,
        )
        if cache is not None and TENSORRT in map(provider_name, providers):
            try:
                cache.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ArtifactError(f"TensorRT engine cache {cache} cannot be created: {exc}") from exc
        return providers

    def predict(self, inputs: Batch) -> Batch:
        if self._session is None:
            raise RuntimeError("predict() before load()")
        results = self._session.run(self._output_names, inputs)
        return dict(zip(self._output_names, (np.asarray(r) for r in results), strict=True))

    def unload(self) -> None:
        self._session = None

    @property
    def inline_ok(self) -> bool:  # type: ignore[override]
        return self._session is not None and self._session.get_providers()[0] == "CPUExecutionProvider"

    @property
    def computes_on_caller(self) -> bool:  # type: ignore[override]
        return self.inline_ok and self.threads == 1  # one intra-op thread: ORT runs on the caller's

    @property
    def provider(self) -> str:
        if self._session is None:
            return "none"
        return with_precision(self._session.get_providers()[0], self.precision)
