"""The BentoML service: thin glue that starts the registry and mounts the protocol app.

Run with ``bentoml serve service.service:ModelServer`` (the README's main command does this).
"""

from __future__ import annotations

import asyncio
import logging

import bentoml
import grpc

from service.bento.app import build_app
from service.bento.grpc_server import start_grpc, stop_grpc
from service.bento.lane import FastLane
from service.bento.patches import (
    freeze_heap,
    listen_per_worker,
    patch_timeout_middleware,
    report_patches,
    take_own_listener,
    wrap_service,
)
from service.bento.security import access_policy, gated, install_gate, tls_config
from service.dataplane import DataPlane
from service.metrics import get_metrics
from service.models.registry import ModelRegistry
from service.protocols.routes import tracing_exclusions
from service.settings import get_settings

patch_timeout_middleware()
settings = get_settings()
if settings.reuse_port:
    listen_per_worker()  # in the `bentoml serve` process
    take_own_listener()  # in each worker
app = build_app()
policy = access_policy(settings)  # None: no tokens configured, access control off
log = logging.getLogger("service")
log.setLevel(logging.INFO)  # model lifecycle events (loaded, failed, unloaded) belong in the server log


@bentoml.service(
    name="keras-serving",
    workers=settings.workers,
    traffic={"timeout": settings.request_timeout_s},
    http={"host": settings.host, "port": settings.port},
    logging={"access": {"enabled": settings.access_log}},
    tracing={"sample_rate": 0.0, "excluded_urls": tracing_exclusions()},
    **tls_config(settings),
)
@bentoml.asgi_app(app, path="/")
class ModelServer:
    """Serves every model version of the repository; see the README for the API."""

    def __init__(self) -> None:
        self.registry = ModelRegistry(settings)
        app.state.dataplane = DataPlane(self.registry)
        self._start: asyncio.Task[None] | None = None
        self._grpc: grpc.aio.Server | None = None

    @bentoml.on_startup
    async def start_models(self) -> None:
        """Load models in the background so /livez answers at once and /readyz flips when warm."""

        async def load() -> None:
            await self.registry.start()
            freeze_heap()
            get_metrics().worker_ready.set(1)

        report_patches(get_metrics().bentoml_patch)
        self._grpc = await start_grpc(app.state.dataplane, settings, policy)
        self._start = asyncio.get_running_loop().create_task(load())

    @bentoml.on_shutdown
    async def stop_models(self) -> None:
        if self._start is not None:
            self._start.cancel()
        await stop_grpc(self._grpc)
        await self.registry.close()

    def __is_ready__(self) -> bool:
        return self.registry.ready()


install_gate(ModelServer, policy, settings)  # BentoML's routes, and every route without the fast lane
if settings.fast_lane and not settings.access_log:
    ours = gated(app, policy, settings)
    wrap_service(ModelServer, lambda bento_app: FastLane(bento_app, ours, settings.request_timeout_s))
