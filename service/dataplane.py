"""The data plane: one path for every protocol from decoded tensors to outputs.

It resolves the model version (name, version or label), validates inputs against the signature
(names, dtypes, shapes), runs them through the version's batcher and records metrics. It knows
nothing of HTTP or gRPC; protocol adapters decode, call :meth:`DataPlane.infer`, and encode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import numpy as np

from service.errors import InternalError, InvalidInput, NotFound, Overloaded, ServingError, status_of
from service.lifecycle import ModelRegistry
from service.metrics import get_metrics
from service.schema import ModelMetadata, TensorSpec
from service.versions import ServedVersion, State

log = logging.getLogger("service.dataplane")
Tensors = dict[str, np.ndarray]


@dataclass
class InferenceRequest:
    """A decoded request. ``inputs`` maps input names to arrays; ``None`` as the single key means
    "the model's only input"."""

    model: str
    inputs: dict[str | None, np.ndarray]
    protocol: str
    version: int | None = None
    label: str | None = None
    outputs: list[str] | None = None


@dataclass
class InferenceResponse:
    model: str
    version: int
    runtime: str
    outputs: Tensors
    metadata: ModelMetadata


def _shape_ok(spec: TensorSpec, shape: tuple[int, ...]) -> bool:
    return len(shape) == len(spec.shape) and all(w in (-1, g) for w, g in zip(spec.shape, shape, strict=True))


def validate_inputs(metadata: ModelMetadata, given: dict[str | None, np.ndarray]) -> tuple[Tensors, int]:
    """Match ``given`` to the signature: names, numeric kind, shape (batch first); cast to the model dtype."""
    specs = {s.name: s for s in metadata.inputs}
    if None in given:
        if len(specs) != 1:
            raise InvalidInput(f"model {metadata.name!r} has several inputs {sorted(specs)}; name each one")
        named = {metadata.inputs[0].name: given[None]}
    else:
        named = {str(k): v for k, v in given.items()}
    missing = sorted(set(specs) - set(named))
    unknown = sorted(set(named) - set(specs))
    if missing or unknown:
        raise InvalidInput(
            f"inputs do not match the signature of {metadata.name!r}: expected {sorted(specs)}, got {sorted(named)}",
            expected=sorted(specs),
            got=sorted(named),
        )
    arrays: Tensors = {}
    rows: int | None = None
    for name, spec in specs.items():
        array = named[name]
        if array.dtype.kind not in "iufb":
            raise InvalidInput(
                f"input {name!r}: expected {spec.dtype}, got {array.dtype}", expected=spec.dtype
            )
        if not _shape_ok(spec, array.shape):
            raise InvalidInput(
                f"input {name!r}: expected shape {spec.shape} (first dimension = batch), got {list(array.shape)}",
                expected=spec.shape,
                got=list(array.shape),
            )
        if array.shape[0] == 0:
            raise InvalidInput(f"input {name!r} is empty: send at least one row")
        if rows is not None and array.shape[0] != rows:
            raise InvalidInput(f"inputs disagree on the batch size: {rows} vs {array.shape[0]} for {name!r}")
        rows = array.shape[0]
        arrays[name] = array if array.dtype == spec.dtype else array.astype(spec.dtype)
    assert rows is not None
    return arrays, rows


class DataPlane:
    """Validation, batching and metrics around the registry; the only thing protocols talk to."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        metrics = get_metrics()
        started = perf_counter()
        model_label = request.model if request.model in self.registry.models else "__unknown__"
        version_label = ""
        try:
            sv = self.registry.resolve(request.model, request.version, request.label)
            version_label = str(sv.version)
            inflight = metrics.inflight.labels(sv.name, version_label, request.protocol)
            sv.acquire()
            inflight.inc()
            try:
                outputs = await self._run(sv, request, metrics)
            finally:
                sv.release()
                inflight.dec()
        except ServingError as exc:
            self._count(request, model_label, version_label, exc, started)
            raise
        except Exception as exc:
            log.exception("inference failed for model %s", request.model)
            error = InternalError()
            self._count(request, model_label, version_label, error, started)
            raise error from exc
        self._count(request, sv.name, version_label, None, started)
        assert sv.metadata is not None
        return InferenceResponse(sv.name, sv.version, sv.runtime_kind, outputs, sv.metadata)

    async def _run(self, sv: ServedVersion, request: InferenceRequest, metrics: Any) -> Tensors:
        assert sv.metadata is not None and sv.batcher is not None
        arrays, rows = validate_inputs(sv.metadata, request.inputs)
        outputs, timing = await sv.batcher.submit(arrays, rows)
        metrics.queue.labels(sv.name, str(sv.version)).observe(timing.queue_s)
        metrics.compute.labels(sv.name, str(sv.version)).observe(timing.compute_s)
        if request.outputs:
            unknown = [o for o in request.outputs if o not in outputs]
            if unknown:
                raise InvalidInput(f"unknown output(s) {unknown}; model outputs are {sorted(outputs)}")
            outputs = {o: outputs[o] for o in request.outputs}
        return outputs

    def _count(
        self, request: InferenceRequest, model: str, version: str, error: ServingError | None, started: float
    ) -> None:
        metrics = get_metrics()
        code = status_of(error)[0] if error is not None else 200
        outcome = "success" if error is None else ("client_error" if code < 500 else "server_error")
        metrics.requests.labels(model, version, request.protocol, str(code), outcome).inc()
        metrics.latency.labels(model, version, request.protocol).observe(perf_counter() - started)
        if isinstance(error, Overloaded):
            metrics.rejected.labels(model, version, request.protocol).inc()

    # ----- model information for the protocols -------------------------------------------------
    def model_names(self) -> list[str]:
        return sorted(self.registry.models)

    def versions(self, name: str) -> list[ServedVersion]:
        """Every known version of ``name`` (all states), oldest first; 404 for unknown models."""
        if name not in self.registry.models:
            raise NotFound(f"model {name!r} not found; available models: {self.model_names()}")
        return [sv for _, sv in sorted(self.registry.models[name].items())]

    def find(self, name: str, version: int | None = None, label: str | None = None) -> ServedVersion:
        """A version for status or metadata, whatever its state: the named one, the label's, or else the
        default (or the newest known) version. 404 only."""
        versions = self.versions(name)
        if label is not None:
            version = self.registry.label_version(name, label)
        if version is None:
            return self.registry.default_version(name) or versions[-1]
        for sv in versions:
            if sv.version == version:
                return sv
        raise NotFound(
            f"version {version} of model {name!r} not found; known versions: {[v.version for v in versions]}"
        )

    def describe(self, name: str) -> dict[str, Any]:
        """The native model description: default version, labels and each version's state and signature."""
        default = self.registry.default_version(name)
        return {
            "name": name,
            "default_version": default.version if default else None,
            "labels": self.registry.policy(name).labels,
            "versions": [_describe_version(sv) for sv in self.versions(name)],
        }

    def ready(self) -> bool:
        return self.registry.ready()

    def model_ready(self, name: str) -> tuple[bool, str]:
        """Whether ``name`` has a ready default version, with a reason when not."""
        self.versions(name)
        default = self.registry.default_version(name)
        if default is not None:
            return True, f"version {default.version} ready"
        states = {
            sv.version: str(sv.state) + (f" ({sv.error})" if sv.error else "") for sv in self.versions(name)
        }
        return False, f"no ready version: {states}"


def _describe_version(sv: ServedVersion) -> dict[str, Any]:
    meta = sv.metadata
    return {
        "version": sv.version,
        "state": str(sv.state),
        "error": sv.error,
        "runtime": sv.runtime_kind,
        "provider": sv.runtime.provider if sv.runtime is not None and sv.state is State.READY else None,
        "load_seconds": sv.load_seconds,
        "inputs": [s.model_dump() for s in meta.inputs] if meta else None,
        "outputs": [s.model_dump() for s in meta.outputs] if meta else None,
        "class_labels": meta.labels if meta else None,
        "input_contract": meta.input_contract if meta else None,
    }
