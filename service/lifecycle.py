"""Model versions through their life: loading, ready, failed, unloading, unloaded; hot reload.

:class:`ModelRegistry` keeps one :class:`ServedVersion` per model version the repository policy serves.
It polls the repository; a new version is loaded and warmed up (off the event loop) before it can become
the default; a version that leaves the policy stops taking new requests at once and is unloaded when its
in-flight requests have finished, so a swap under load fails nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from time import perf_counter

import numpy as np
from pydantic import ValidationError

from service.batching import Batcher
from service.errors import NotFound, Unavailable
from service.metrics import get_metrics
from service.repository import ConfigError, ModelPolicy, RepositoryConfig, Snapshot, load_config, scan
from service.runtimes.base import Runtime, create_runtime
from service.schema import ModelMetadata
from service.settings import Settings

log = logging.getLogger("service.lifecycle")


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


def _read_metadata(directory: Path) -> ModelMetadata:
    return ModelMetadata.model_validate_json((directory / "metadata.json").read_bytes())


def warmup_batch(metadata: ModelMetadata) -> dict[str, np.ndarray]:
    """The metadata's example request as arrays of the model's dtypes."""
    return {s.name: np.asarray(metadata.example[s.name], dtype=s.dtype) for s in metadata.inputs}


class ModelRegistry:
    """All served model versions of this process, kept in step with the repository."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.repository
        self.config = RepositoryConfig()
        self.config_error: str | None = None
        self.models: dict[str, dict[int, ServedVersion]] = {}
        self.initial_load_done = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None

    # ----- lookups -------------------------------------------------------------------------------
    def policy(self, name: str) -> ModelPolicy:
        return self.config.policy(name)

    def live_versions(self, name: str) -> list[ServedVersion]:
        """Versions that are neither unloading nor unloaded, oldest first."""
        entries = self.models.get(name, {})
        return [sv for v, sv in sorted(entries.items()) if sv.state not in (State.UNLOADING, State.UNLOADED)]

    def default_version(self, name: str) -> ServedVersion | None:
        ready = [sv for sv in self.live_versions(name) if sv.state is State.READY]
        return ready[-1] if ready else None

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> ServedVersion:
        """The version a request addresses; raises 404 for unknown names and 503 for versions not ready."""
        if name not in self.models:
            raise NotFound(f"model {name!r} not found; available models: {sorted(self.models)}")
        if label is not None:
            labels = self.policy(name).labels
            if label not in labels:
                raise NotFound(f"label {label!r} of model {name!r} not found; labels: {sorted(labels)}")
            version = labels[label]
        if version is None:
            sv = self.default_version(name)
            if sv is None:
                states = {
                    v.version: f"{v.state}" + (f": {v.error}" if v.error else "")
                    for v in self.live_versions(name)
                }
                raise Unavailable(f"model {name!r} has no ready version (versions: {states})")
            return sv
        sv = self.models[name].get(version)
        if sv is None or sv.state in (State.UNLOADING, State.UNLOADED):
            served = [v.version for v in self.live_versions(name)]
            raise NotFound(f"version {version} of model {name!r} not found; served versions: {served}")
        if sv.state is not State.READY:
            detail = f": {sv.error}" if sv.error else ""
            raise Unavailable(f"version {version} of model {name!r} is {sv.state}{detail}")
        return sv

    def ready(self) -> bool:
        """True once the first load finished and every model with a loadable version has its default ready."""
        if not self.initial_load_done:
            return False
        for name in self.models:
            live = self.live_versions(name)
            if any(sv.state is State.LOADING for sv in live) and self.default_version(name) is None:
                return False
        return True

    # ----- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Load what the repository holds, then keep polling it (if the poll interval is > 0)."""
        await self.sync()
        self.initial_load_done = True
        if self.settings.poll_interval_s > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.sync()
            except Exception:  # keep polling whatever one pass hit
                log.exception("repository poll failed")

    async def sync(self) -> None:
        """One pass: load new versions (waits for them) and retire versions the policy no longer serves."""
        try:
            self.config = await asyncio.to_thread(load_config, self.root)
            self.config_error = None
        except ConfigError as exc:
            if self.config_error != str(exc):
                log.error("keeping the previous serving configuration: %s", exc)
            self.config_error = str(exc)
        snapshot: Snapshot = await asyncio.to_thread(scan, self.root, self.config)
        wanted = snapshot.selected()
        loads = []
        for name, versions in wanted.items():
            entries = self.models.setdefault(name, {})
            for version, directory in versions.items():
                current = entries.get(version)
                if current is None or current.state is State.UNLOADED:
                    kind = self.policy(name).runtime or self.settings.runtime
                    sv = ServedVersion(name, version, directory, kind)
                    entries[version] = sv
                    loads.append(self._load(sv))
        if loads:
            await asyncio.gather(*loads)
        for name, entries in self.models.items():
            keep = wanted.get(name, {})
            if keep and not any(entries[v].state is State.READY for v in keep):
                log.warning("model %s: no newly selected version loaded; keeping the old ones", name)
                continue
            for version, sv in entries.items():
                if version not in keep and sv.state in (State.READY, State.FAILED):
                    self._spawn(self._retire(sv))

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load(self, sv: ServedVersion) -> None:
        metrics = get_metrics()
        metrics.set_state(sv.name, sv.version, "loading")
        started = perf_counter()
        try:
            sv.metadata, sv.runtime = await asyncio.to_thread(self._load_blocking, sv)
        except Exception as exc:
            sv.state, sv.error = State.FAILED, _short(exc)
            metrics.set_state(sv.name, sv.version, "failed")
            log.error("model %s version %s failed to load: %s", sv.name, sv.version, sv.error)
            return
        policy = self.policy(sv.name)
        sv.batcher = Batcher(
            sv.runtime.predict,
            name=f"{sv.name}-{sv.version}",
            max_batch_size=policy.max_batch_size or self.settings.max_batch_size,
            max_wait_ms=policy.max_wait_ms if policy.max_wait_ms is not None else self.settings.max_wait_ms,
            max_queue_rows=policy.max_queue_rows or self.settings.max_queue_rows,
            on_batch=metrics.batch_size.labels(sv.name, str(sv.version)).observe,
        )
        sv.load_seconds = perf_counter() - started
        sv.drained.set()
        sv.state = State.READY
        metrics.set_state(sv.name, sv.version, "ready")
        metrics.load_seconds.labels(sv.name, str(sv.version)).set(sv.load_seconds)
        metrics.info.labels(sv.name, str(sv.version), sv.runtime_kind, sv.runtime.provider).set(1)
        log.info(
            "model %s version %s ready in %.2fs (%s)",
            sv.name,
            sv.version,
            sv.load_seconds,
            sv.runtime.provider,
        )

    def _load_blocking(self, sv: ServedVersion) -> tuple[ModelMetadata, Runtime]:
        metadata = _read_metadata(sv.directory)
        policy = self.policy(sv.name)
        runtime = create_runtime(
            sv.runtime_kind,
            sv.directory,
            metadata,
            providers=policy.onnx_providers or self.settings.onnx_providers,
            threads=self.settings.onnx_threads,
        )
        runtime.load()
        batch = warmup_batch(metadata)
        for _ in range(3):
            runtime.predict(batch)
        return metadata, runtime

    async def _retire(self, sv: ServedVersion) -> None:
        was_ready = sv.state is State.READY
        sv.state = State.UNLOADING
        get_metrics().set_state(sv.name, sv.version, "unloading")
        if was_ready:
            await sv.drained.wait()
        if sv.batcher is not None:
            await sv.batcher.close()
        if sv.runtime is not None:
            await asyncio.to_thread(sv.runtime.unload)
        sv.state, sv.runtime, sv.batcher = State.UNLOADED, None, None
        get_metrics().set_state(sv.name, sv.version, "unloaded")
        log.info("model %s version %s unloaded", sv.name, sv.version)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        for entries in self.models.values():
            for sv in entries.values():
                if sv.state in (State.READY, State.FAILED):
                    await self._retire(sv)


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return f"metadata.json invalid: {exc.error_count()} error(s), first: {exc.errors()[0]['msg']}"
    if isinstance(exc, FileNotFoundError):
        return f"file missing: {Path(exc.filename or '').name}"
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
