"""OpenVINO on the CPU: ``model.onnx`` (fp32, bf16) or ``model.int8.onnx`` (int8). Optional extra:
``pip install '.[openvino]'``.

The compiled model is set for one latency stream (``PERFORMANCE_HINT: LATENCY``) with
``INFERENCE_NUM_THREADS`` = the ``onnx_threads`` setting (0 = OpenVINO's own choice), without CPU pinning
(each BentoML worker holds its own model; pinned threads of two workers would land on the same core), and
a dynamic batch dimension, so one compiled model takes every batch the batcher forms.

Precision is fixed at load and always set explicitly, never left to OpenVINO's default (which is bf16 on
CPUs with AMX or AVX-512 bf16, and would move answers by ~1e-2 without anyone asking for it):

* ``fp32``: ``model.onnx`` with ``INFERENCE_PRECISION_HINT: f32``;
* ``int8``: ``model.int8.onnx``, whose QDQ nodes OpenVINO runs as int8 kernels; the rest in f32;
* ``bf16``: ``model.onnx`` with the bf16 hint where ``OPTIMIZATION_CAPABILITIES`` lists ``BF16``; on other
  CPUs (AVX2-only, like the project's AMD EPYC Zen 3) f32 with a warning, and :attr:`precision` and the
  provider text report fp32, the precision really in use.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from service.runtimes.base import PLATFORMS, ArtifactError, Batch, Runtime, variant_file, with_precision
from service.schema import ModelMetadata

log = logging.getLogger("service.runtimes.openvino")

OPENVINO_MISSING = (
    "the openvino runtime needs OpenVINO, which is not installed: pip install 'keras-serving[openvino]'"
)
DEVICE = "CPU"
HINTS = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}
"""``INFERENCE_PRECISION_HINT`` per precision (int8 comes from the QDQ graph; its float parts stay f32)."""


def cpu_has_bf16(core: Any) -> bool:
    """True when the CPU plugin lists ``BF16`` among its optimization capabilities."""
    return "BF16" in list(core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES"))


class OpenVinoRuntime(Runtime):
    """Runs the version's ONNX file (or its int8 variant) through one OpenVINO infer request."""

    name = "openvino"
    inline_ok = DEVICE == "CPU"
    platform = PLATFORMS["openvino"]
    load_lock = threading.Lock()
    """One version compiles and warms up at a time: a test run saw a worker hang for good with one
    version in ``compile_model`` and two others in their warm-up ``infer``, all three blocked."""

    def __init__(
        self, directory: Path, metadata: ModelMetadata, threads: int, precision: str = "fp32"
    ) -> None:
        super().__init__(directory, metadata)
        self.threads = threads
        self.requested = precision
        self.precision = precision
        self._compiled: Any = None
        self._request: Any = None
        self._outputs: list[tuple[str, Any]] = []

    def load(self) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise ArtifactError(OPENVINO_MISSING) from exc
        if self.requested not in HINTS:
            raise ArtifactError(f"unknown precision {self.requested!r}; expected one of {', '.join(HINTS)}")
        model_file = variant_file(self.metadata, "fp32" if self.requested == "bf16" else self.requested)
        self.verify(model_file)
        core = ov.Core()
        precision = self.requested
        if precision == "bf16" and not cpu_has_bf16(core):
            log.warning(
                "model %s version %s: precision bf16 asked for, but this CPU has no bf16 (capabilities %s); "
                "running fp32",
                self.metadata.name,
                self.metadata.version,
                ", ".join(core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")),
            )
            precision = "fp32"
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": HINTS[precision],
            "ENABLE_CPU_PINNING": False,
        }
        if self.threads > 0:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            model = core.read_model(str(self.directory / model_file))
            model.reshape({s.name: ov.PartialShape(s.shape) for s in self.metadata.inputs})  # -1: dynamic
            self._compiled = core.compile_model(model, DEVICE, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ArtifactError(f"{model_file} cannot be loaded by OpenVINO: {str(exc)[:300]}") from exc
        names = {n for port in self._compiled.inputs for n in port.get_names()}
        missing = [s.name for s in self.metadata.inputs if s.name not in names]
        if missing:
            raise ArtifactError(
                f"{model_file} has no input named {missing}; graph inputs are {sorted(names)}"
            )
        self._outputs = [(s.name, self._compiled.output(s.name)) for s in self.metadata.outputs]
        self._request = self._compiled.create_infer_request()
        self.precision = precision

    def predict(self, inputs: Batch) -> Batch:
        if self._request is None:
            raise RuntimeError("predict() before load()")
        result = self._request.infer(inputs)  # copies the outputs (share_outputs=False)
        return {name: result[port] for name, port in self._outputs}

    def unload(self) -> None:
        self._request = None
        self._compiled = None

    @property
    def provider(self) -> str:
        if self._compiled is None:
            return "none"
        return with_precision(f"OpenVINO {DEVICE}", self.precision)
