"""The registry of served model versions: resolution, readiness and hot reload.

:class:`ModelRegistry` keeps one :class:`ServedVersion` per model version the repository policy serves.
It polls the repository; a new version is loaded and warmed up (off the event loop) before it can become
the default; a version that leaves the policy stops taking new requests at once and is unloaded when its
in-flight requests have finished, so a swap under load fails nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from service.errors import NotFound, Unavailable
from service.models.config import ConfigError, ModelPolicy, RepositoryConfig, load_config
from service.models.repository import Snapshot, scan
from service.models.version import ServedVersion, State
from service.settings import Settings

log = logging.getLogger("service.models")

SHADOWED_NAMES = {
    "stats": "GET /v2/models/stats answers the V2 statistics of every model (Triton's route), so this "
    "model's V2 REST metadata is at /v2/models/stats/versions/<version>; every other route names it as usual",
}
"""Model names a protocol route takes before the model's own (a warning when such a model appears)."""


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
        self.on_sync: list[Callable[[], None]] = []
        """Called after every pass (``serving.yaml`` may have changed): model operations reconfigure."""
        self._unserved: set[str] = set()
        """Models none of whose selected versions is ready (warned about once, not at every pass)."""

    # ----- lookups -------------------------------------------------------------------------------
    def policy(self, name: str) -> ModelPolicy:
        return self.config.policy(name)

    def live_versions(self, name: str) -> list[ServedVersion]:
        """Versions that are neither unloading nor unloaded, oldest first."""
        entries = self.models.get(name, {})
        return [sv for v, sv in sorted(entries.items()) if sv.state not in (State.UNLOADING, State.UNLOADED)]

    def default_version(self, name: str) -> ServedVersion | None:
        """The newest ready version (every request naming neither version nor label looks it up)."""
        entries = self.models.get(name)
        if entries:
            for version in sorted(entries, reverse=True):
                if entries[version].state is State.READY:
                    return entries[version]
        return None

    def label_version(self, name: str, label: str) -> int:
        """The version ``label`` points to in ``serving.yaml``; 404 listing the labels otherwise."""
        labels = self.policy(name).labels
        if label not in labels:
            raise NotFound(f"label {label!r} of model {name!r} not found; labels: {sorted(labels)}")
        return labels[label]

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> ServedVersion:
        """The version a request addresses; raises 404 for unknown names and 503 for versions not ready."""
        if name not in self.models:
            if not self.initial_load_done:  # this worker has not read the repository yet
                raise Unavailable("the server is still loading its models; retry")
            raise NotFound(f"model {name!r} not found; available models: {sorted(self.models)}")
        if label is not None:
            version = self.label_version(name, label)
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
            if name in SHADOWED_NAMES and name not in self.models:
                log.warning("model %s: %s", name, SHADOWED_NAMES[name])
            entries = self.models.setdefault(name, {})
            for version, directory in versions.items():
                current = entries.get(version)
                if current is None or current.state is State.UNLOADED:
                    config = self.policy(name).effective(self.settings)
                    sv = ServedVersion(name, version, directory, config.runtime)
                    entries[version] = sv
                    loads.append(sv.load(config))
        if loads:
            await asyncio.gather(*loads)
        for name, entries in self.models.items():
            keep = wanted.get(name, {})
            if keep and not any(entries[v].state is State.READY for v in keep):
                self._warn_unserved(name, sorted(keep))
                continue
            self._unserved.discard(name)
            for version, sv in entries.items():
                if version not in keep and sv.state in (State.READY, State.FAILED):
                    self._spawn(sv.retire())
        for listener in self.on_sync:
            listener()

    def _warn_unserved(self, name: str, selected: list[int]) -> None:
        """Once, until one of them is ready: none of the model's selected versions loaded."""
        if name in self._unserved:
            return
        self._unserved.add(name)
        older = [
            v for v, sv in sorted(self.models[name].items()) if v not in selected and sv.state is State.READY
        ]
        kept = f"keeping version(s) {older}" if older else "it has no version to serve until one loads"
        log.warning("model %s: none of its selected versions %s loaded; %s", name, selected, kept)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        for entries in self.models.values():
            for sv in entries.values():
                if sv.state in (State.READY, State.FAILED):
                    await sv.retire()
