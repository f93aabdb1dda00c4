"""One model version through its life: loading, ready, failed, unloading, unloaded.

:class:`ServedVersion` holds a version's runtime and batcher, counts its in-flight requests, loads and
warms it up off the event loop, and unloads it only after those requests have finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from time import perf_counter

import numpy as np
from pydantic import ValidationError

from service.batching import Batcher
from service.metrics import get_metrics
from service.repository import ModelPolicy
from service.runtimes.base import Runtime
from service.runtimes.factory import create_runtime
from service.schema import ModelMetadata
from service.settings import Settings

log = logging.getLogger("service.versions")


class State(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADING = "unloading"
    UNLOADED = "unloaded"


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

    def acquire(self) -> None:
        self.inflight += 1
        self.drained.clear()

    def release(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self.drained.set()

    async def load(self, settings: Settings, policy: ModelPolicy) -> None:
        """Load, warm up and mark ready (or failed, with the reason); blocking work runs on a thread."""
        metrics = get_metrics()
        metrics.set_state(self.name, self.version, "loading")
        started = perf_counter()
        try:
            self.metadata, runtime = await asyncio.to_thread(self._load_blocking, settings, policy)
        except Exception as exc:
            self.state, self.error = State.FAILED, _short(exc)
            metrics.set_state(self.name, self.version, "failed")
            log.error("model %s version %s failed to load: %s", self.name, self.version, self.error)
            return
        self.runtime = runtime
        self.batcher = Batcher(
            runtime.predict,
            name=f"{self.name}-{self.version}",
            max_batch_size=policy.max_batch_size or settings.max_batch_size,
            max_wait_ms=policy.max_wait_ms if policy.max_wait_ms is not None else settings.max_wait_ms,
            max_queue_rows=policy.max_queue_rows or settings.max_queue_rows,
            on_batch=metrics.batch_size.labels(self.name, str(self.version)).observe,
        )
        self.load_seconds = perf_counter() - started
        self.drained.set()
        self.state = State.READY
        metrics.set_state(self.name, self.version, "ready")
        metrics.load_seconds.labels(self.name, str(self.version)).set(self.load_seconds)
        metrics.info.labels(self.name, str(self.version), self.runtime_kind, runtime.provider).set(1)
        log.info(
            "model %s version %s ready in %.2fs (%s)",
            self.name,
            self.version,
            self.load_seconds,
            runtime.provider,
        )

    def _load_blocking(self, settings: Settings, policy: ModelPolicy) -> tuple[ModelMetadata, Runtime]:
        metadata = _read_metadata(self.directory)
        runtime = create_runtime(
            self.runtime_kind,
            self.directory,
            metadata,
            providers=policy.onnx_providers or settings.onnx_providers,
            threads=settings.onnx_threads,
        )
        runtime.load()
        batch = warmup_batch(metadata)
        for _ in range(3):
            runtime.predict(batch)
        return metadata, runtime

    async def retire(self) -> None:
        """Stop taking requests, wait for the in-flight ones, then unload."""
        was_ready = self.state is State.READY
        self.state = State.UNLOADING
        get_metrics().set_state(self.name, self.version, "unloading")
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
        get_metrics().set_state(self.name, self.version, "unloaded")
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
