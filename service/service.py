"""The BentoML service: thin glue that starts the registry and mounts the protocol app.

Run with ``bentoml serve service.service:ModelServer`` (the README's main command does this).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import bentoml
import grpc
import numpy as np
from pydantic import Field

from service import server_log, tracing
from service.bento import endpoints
from service.bento.accept import patch_accept
from service.bento.app import build_app
from service.bento.bodyread import patch_body_read
from service.bento.discard import patch_discard
from service.bento.drain import Drain, install_drain
from service.bento.endpoints import ModelList, Prediction
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
from service.bento.workers import ServerReadiness, first_start, server_folder
from service.dataplane import DataPlane
from service.metrics import get_metrics
from service.models.registry import ModelRegistry
from service.protocols.routes import BENTOML_API, is_ours, tracing_exclusions
from service.settings import get_settings

patch_timeout_middleware()
patch_accept()  # in each worker: new connections accepted in batches, not one per loop iteration
patch_discard()  # and the unread body of an early answer skipped, not parsed
settings = get_settings()
patch_body_read(is_ours, settings.max_body_bytes)  # large bodies of our routes read into one buffer
if settings.reuse_port:
    listen_per_worker()  # in the `bentoml serve` process
    take_own_listener()  # in each worker
app = build_app()
policy = access_policy(settings)  # None: no tokens configured, access control off
drain = Drain(settings.drain_s)
install_drain(drain)  # SIGTERM in a worker: drain for up to settings.drain_s, then stop
readiness = ServerReadiness(settings.workers)  # /readyz: ready once every worker has loaded
log = logging.getLogger("service")
log.setLevel(logging.INFO)  # model lifecycle events (loaded, failed, unloaded) belong in the server log
log_control = server_log.configure(settings.log_verbose_level, server_folder())  # Triton's log settings


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

    @bentoml.api(route=BENTOML_API["predict"])
    async def predict(
        self,
        model: str,
        inputs: np.ndarray,
        version: Annotated[int, Field(ge=1)] | None = None,
        label: str | None = None,
        outputs: list[str] | None = None,
        *,
        ctx: bentoml.Context,
    ) -> Prediction:
        """Predict with ``model`` (default version, ``version`` or ``label``); ``inputs``: a batch for the
        model's only input (nested lists or an array, rows first); ``outputs``: names to return."""
        dataplane = app.state.dataplane
        return await endpoints.answered(
            ctx, lambda: endpoints.predict(dataplane, model, inputs, version, label, outputs), traced=True
        )

    @bentoml.api(route=BENTOML_API["models"])
    async def models(self, ctx: bentoml.Context) -> ModelList:
        """Every model with its default version, labels and versions (states, signatures, metadata)."""
        return await endpoints.answered(ctx, lambda: endpoints.list_models(app.state.dataplane))

    def __init__(self) -> None:
        self.registry = ModelRegistry(settings)
        app.state.dataplane = DataPlane(self.registry)
        app.state.dataplane.others_ready = readiness
        self._start: asyncio.Task[None] | None = None
        self._log_follow: asyncio.Task[None] | None = None
        self._grpc: grpc.aio.Server | None = None

    @bentoml.on_startup
    async def start_models(self) -> None:
        """Load models in the background so /livez answers at once and /readyz flips when warm; a
        worker restarted after a crash loads first, so it listens (HTTP and gRPC) only when ready."""

        async def load() -> None:
            await self.registry.start()
            freeze_heap()
            get_metrics().worker_ready.set(1)
            readiness.mark_ready()

        report_patches(get_metrics().bentoml_patch)
        # the log settings other workers change
        self._log_follow = asyncio.get_running_loop().create_task(log_control.follow())
        tracing.configure(settings)  # our spans, in this worker (BentoML's own tracing stays at rate 0)
        restarted = not first_start(settings.workers)
        if restarted:
            log.info("worker restarted: loading the models before listening")
            await load()
        self._grpc = await start_grpc(app.state.dataplane, settings, policy)
        drain.attach(app.state.dataplane, lambda grace_s: stop_grpc(self._grpc, grace_s))
        if not restarted:
            self._start = asyncio.get_running_loop().create_task(load())

    @bentoml.on_shutdown
    async def stop_models(self) -> None:
        for task in (self._start, self._log_follow):
            if task is not None:
                task.cancel()
        await stop_grpc(self._grpc)
        await self.registry.close()
        await asyncio.to_thread(tracing.shutdown)  # export the spans still queued (2 s at most)
        await asyncio.to_thread(app.state.dataplane.ops.close)  # capture files and feedback store

    def __is_ready__(self) -> bool:
        return app.state.dataplane.ready()


install_gate(ModelServer, policy, settings)  # BentoML's routes, and every route without the fast lane
if settings.fast_lane and not settings.access_log:
    ours = gated(app, policy, settings)
    wrap_service(ModelServer, lambda bento_app: FastLane(bento_app, ours, settings.request_timeout_s))
