"""The gRPC server: TF Serving's services and the V2 inference service, in every worker process.

Each BentoML worker runs one ``grpc.aio`` server on its own event loop (so it shares the worker's data
plane and batchers) and binds the configured ports with ``SO_REUSEPORT``: the kernel spreads
connections over the workers, a restarted worker simply binds again, and shutdown drains in-flight
calls for a grace period.
"""

from __future__ import annotations

import logging

import grpc

from service.dataplane import DataPlane
from service.protocols.tfserving import grpc as tfserving_grpc
from service.protocols.v2 import grpc as v2_grpc
from service.settings import Settings

log = logging.getLogger("service.grpc")


async def start_grpc(dataplane: DataPlane, settings: Settings) -> grpc.aio.Server | None:
    """Start serving gRPC on the configured ports; ``None`` when both ports are 0 (disabled)."""
    ports = {"TF Serving": settings.grpc_tfserving_port, "KServe V2": settings.grpc_v2_port}
    if not any(ports.values()):
        return None
    limit = settings.max_body_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", max(limit, 64 * 1024 * 1024)),
        ]
    )
    if settings.grpc_tfserving_port:
        tfserving_grpc.register(server, dataplane)
    if settings.grpc_v2_port:
        v2_grpc.register(server, dataplane)
    for name, port in ports.items():
        if port:
            server.add_insecure_port(f"{settings.grpc_host}:{port}")
            log.info("%s gRPC on %s:%s", name, settings.grpc_host, port)
    await server.start()
    return server


async def stop_grpc(server: grpc.aio.Server | None, grace_s: float = 5.0) -> None:
    if server is not None:
        await server.stop(grace_s)
