"""The gRPC server: TF Serving's services and the V2 inference service, in every worker process.

Each BentoML worker runs one ``grpc.aio`` server on its own event loop (so it shares the worker's data
plane and batchers) and binds the configured ports with ``SO_REUSEPORT``: the kernel spreads
connections over the workers, a restarted worker simply binds again, and shutdown drains in-flight
calls for a grace period. With ``SERVING_TLS_CERTFILE``/``SERVING_TLS_KEYFILE`` the ports serve TLS only
(``add_secure_port``); with access control on, every call passes
:class:`service.protocols.grpc_access.AccessInterceptor`. With ``SERVING_GRPC_COMPRESSION`` (gzip or
deflate) every answer is compressed with that algorithm. gRPC Python cannot pick one per call from the
client's ``grpc-accept-encoding`` (the header does not reach the servicer, and a server algorithm is
used as set), so a client that has the algorithm disabled fails with ``INTERNAL``; gRPC's C-core
clients (Python, C++, tritonclient) and Java accept gzip and deflate by default. Requests compressed by a
client are taken whatever the setting.
"""

from __future__ import annotations

import logging

import grpc

from service.dataplane import DataPlane
from service.protocols.access import AccessPolicy
from service.protocols.grpc_access import AccessInterceptor
from service.protocols.tfserving import grpc as tfserving_grpc
from service.protocols.v2 import grpc as v2_grpc
from service.settings import Settings

log = logging.getLogger("service.grpc")
COMPRESSION = {
    "none": grpc.Compression.NoCompression,
    "gzip": grpc.Compression.Gzip,
    "deflate": grpc.Compression.Deflate,
}
"""``SERVING_GRPC_COMPRESSION`` -> the algorithm the servers compress every answer with."""


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from the configured certificate and key; ``None`` without them (plaintext)."""
    if settings.tls_certfile is None or settings.tls_keyfile is None:
        return None
    pair = (settings.tls_keyfile.read_bytes(), settings.tls_certfile.read_bytes())
    return grpc.ssl_server_credentials([pair])


async def start_grpc(
    dataplane: DataPlane, settings: Settings, policy: AccessPolicy | None = None
) -> grpc.aio.Server | None:
    """Start serving gRPC on the configured ports; ``None`` when both ports are 0 (disabled).

    ``policy``: the access policy its calls must satisfy (``None``: open, no interceptor at all)."""
    ports = {"TF Serving": settings.grpc_tfserving_port, "KServe V2": settings.grpc_v2_port}
    if not any(ports.values()):
        return None
    server = grpc.aio.server(
        interceptors=[AccessInterceptor(policy)] if policy is not None else None,
        compression=COMPRESSION[settings.grpc_compression],
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", settings.grpc_max_receive_bytes),
            ("grpc.max_send_message_length", settings.grpc_max_send_bytes),
        ],
    )
    if settings.grpc_tfserving_port:
        tfserving_grpc.register(server, dataplane)
    if settings.grpc_v2_port:
        v2_grpc.register(server, dataplane)
    credentials = server_credentials(settings)
    for name, port in ports.items():
        if port:
            address = f"{settings.grpc_host}:{port}"
            if credentials is None:
                server.add_insecure_port(address)
            else:
                server.add_secure_port(address, credentials)
            log.info("%s gRPC on %s (%s)", name, address, "TLS" if credentials else "plaintext")
    await server.start()
    return server


async def stop_grpc(server: grpc.aio.Server | None, grace_s: float = 5.0) -> None:
    if server is not None:
        await server.stop(grace_s)
