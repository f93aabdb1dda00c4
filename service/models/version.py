"""One model version through its life: loading, ready, failed, unloading, unloaded.

:class:`ServedVersion` holds a version's runtime and batcher, counts its in-flight requests, loads and
warms it up off the event loop, and unloads it only after those requests have finished. It is the
registry's mutable state; everything outside the data plane sees a :class:`VersionView` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from time import perf_counter, time

import numpy as np
from pydantic import ValidationError

from service.batching import Batcher
from service.metric_buffer import LatestTime
from service.metrics import LAST_INFERENCE_INTERVAL_S, get_metrics
from service.models.config import ModelSettings
from service.runtimes.base import PLATFORMS, ArtifactError, Runtime
from service.runtimes.factory import create_runtime
from service.runtimes.providers import ProviderOptions
from service.schema import ModelMetadata

log = logging.getLogger("service.models")


class State(StrEnum):
    """A model version's state; every protocol and metric takes its names from here."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADING = "unloading"
    UNLOADED = "unloaded"


@dataclass(frozen=True)
class VersionView:
    """A read-only snapshot of one model version, for protocol adapters (status, metadata, lists)."""

    name: str
    version: int
    state: State
    error: str | None
    runtime: str
    provider: str | None
    platform: str
    load_seconds: float | None
    metadata: ModelMetadata | None

    @property
    def ready(self) -> bool:
        return self.state is State.READY


@dataclass(eq=False)
class ServedVersion:
    """One model version and everything the server holds for it."""

    name: str
    version: int
    directory: Path
    runtime_kind: str
    state: State = State.LOADING
    error: str | None = None
    metadata: ModelMetadata | None = None
    runtime: Runtime | None = None
    batcher: Batcher | None = None
    load_seconds: float | None = None
    inflight: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def view(self) -> VersionView:
        """This version as it is now, read-only."""
        ready = self.state is State.READY and self.runtime is not None
        return VersionView(
            name=self.name,
            version=self.version,
            state=self.state,
            error=self.error,
            runtime=self.runtime_kind,
            provider=self.runtime.provider if ready and self.runtime is not None else None,
            platform=PLATFORMS.get(self.runtime_kind, ""),
            load_seconds=self.load_seconds,
            metadata=self.metadata,
        )

    def acquire(self) -> None:
        self.inflight += 1
        self.drained.clear()

    def release(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self.drained.set()

    async def load(self, config: ModelSettings) -> None:
        """Load, warm up and mark ready (or failed, with the reason); blocking work runs on a thread."""
        metrics = get_metrics()
        metrics.set_state(self.name, self.version, State.LOADING)
        started = perf_counter()
        try:
            self.metadata, runtime = await asyncio.to_thread(self._load_blocking, config)
        except Exception as exc:
            self.state, self.error = State.FAILED, _short(exc)
            metrics.set_state(self.name, self.version, State.FAILED)
            expected = isinstance(exc, ArtifactError | ValidationError | OSError)
            log.error(
                "model %s version %s failed to load: %s",
                self.name,
                self.version,
                self.error,
                exc_info=None if expected else exc,  # an unexpected failure gets its traceback
            )
            return
        self.runtime = runtime
        self.batcher = Batcher(
            runtime.predict,
            name=f"{self.name}-{self.version}",
            max_batch_size=config.max_batch_size,
            max_wait_ms=config.max_wait_ms,
            max_queue_rows=config.max_queue_rows,
            max_queue_delay_ms=config.max_queue_delay_ms,
            on_batch=self._batch_observer(config.max_queue_delay_ms / 1000.0),
            on_drop=lambda reason: metrics.dropped.labels(self.name, str(self.version), reason).inc(),
            inline_s=config.inline_run_us / 1e6 if runtime.inline_ok else 0.0,
            cpu_timed=runtime.computes_on_caller,
        )
        self.load_seconds = perf_counter() - started
        self.drained.set()
        self.state = State.READY
        metrics.set_state(self.name, self.version, State.READY)
        metrics.load_seconds.labels(self.name, str(self.version)).set(self.load_seconds)
        metrics.info.labels(self.name, str(self.version), self.runtime_kind, runtime.provider).set(1)
        log.info(
            "model %s version %s ready in %.2fs (%s)",
            self.name,
            self.version,
            self.load_seconds,
            runtime.provider,
        )

    def _batch_observer(self, budget_s: float) -> Callable[[int], None]:
        """What the batcher calls after each runtime call (on the event loop): the batch's rows into
        ``serving_batch_size``, the time into ``serving_last_inference_timestamp_seconds`` (at most one
        write per :data:`service.metrics.LAST_INFERENCE_INTERVAL_S`), and the admission threshold (``budget_s`` at first)
        into ``serving_admission_threshold_seconds`` when it has moved."""
        metrics = get_metrics()
        labels = (self.name, str(self.version))
        batch_size = metrics.bound(metrics.batch_size, *labels)
        last_inference = LatestTime(metrics.last_inference.labels(*labels), LAST_INFERENCE_INTERVAL_S)
        threshold = metrics.admission_threshold.labels(*labels)
        threshold.set(budget_s)
        written = [budget_s]

        def observe(rows: int) -> None:
            batch_size.observe(rows)
            last_inference.note(time())
            if self.batcher is not None and self.batcher.admit_at_s != written[0]:
                written[0] = self.batcher.admit_at_s
                threshold.set(written[0])

        return observe

    def _load_blocking(self, config: ModelSettings) -> tuple[ModelMetadata, Runtime]:
        metadata = _read_metadata(self.directory)
        runtime = create_runtime(
            self.runtime_kind,
            self.directory,
            metadata,
            providers=config.onnx_providers,
            threads=config.onnx_threads,
            provider_options=ProviderOptions(
                strict=config.onnx_strict_providers,
                tensorrt_cache_dir=config.tensorrt_cache_dir,
                tensorrt_fp16=config.tensorrt_fp16,
            ),
            max_batch_size=config.max_batch_size,
            precision=config.precision,
        )
        with runtime.load_lock or contextlib.nullcontext():
            runtime.load()
            batch = warmup_batch(metadata)
            for _ in range(3):
                runtime.predict(batch)
        return metadata, runtime

    async def retire(self) -> None:
        """Stop taking requests, wait for the in-flight ones, then unload."""
        was_ready = self.state is State.READY
        self.state = State.UNLOADING
        get_metrics().set_state(self.name, self.version, State.UNLOADING)
        if was_ready:
            await self.drained.wait()
        if self.batcher is not None:
            await self.batcher.close()
        if self.runtime is not None:
            with contextlib.suppress(KeyError):  # the info series goes with the runtime
                get_metrics().info.remove(
                    self.name, str(self.version), self.runtime_kind, self.runtime.provider
                )
            await asyncio.to_thread(self.runtime.unload)
        self.state, self.runtime, self.batcher = State.UNLOADED, None, None
        get_metrics().set_state(self.name, self.version, State.UNLOADED)
        log.info("model %s version %s unloaded", self.name, self.version)


def _read_metadata(directory: Path) -> ModelMetadata:
    return ModelMetadata.model_validate_json((directory / "metadata.json").read_bytes())


def warmup_batch(metadata: ModelMetadata) -> dict[str, np.ndarray]:
    """The metadata's example request as arrays of the model's dtypes."""
    return {s.name: np.asarray(metadata.example[s.name], dtype=s.dtype) for s in metadata.inputs}


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return f"metadata.json invalid: {exc.error_count()} error(s), first: {exc.errors()[0]['msg']}"
    if isinstance(exc, FileNotFoundError):
        return f"file missing: {Path(exc.filename or '').name}"
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
