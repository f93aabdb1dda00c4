"""Bearer tokens for both gRPC services: one ``grpc.aio`` server interceptor, installed only when access
control is on. It reads the ``authorization`` metadata (``Bearer <token>``), asks
:class:`service.protocols.access.AccessPolicy` and ends a refused call through
:func:`service.protocols.grpc_errors.abort` (``UNAUTHENTICATED`` or ``PERMISSION_DENIED``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from service.errors import ServingError
from service.protocols.access import AccessPolicy
from service.protocols.grpc_errors import abort

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


def _authorization(details: grpc.HandlerCallDetails) -> str | None:
    for key, value in details.invocation_metadata or ():
        if key == "authorization":
            return value if isinstance(value, str) else bytes(value).decode("latin-1")
    return None


def _refusal(handler: grpc.RpcMethodHandler, error: ServingError) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that only ends the call with ``error``."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await abort(context, error)

    kind = (handler.request_streaming, handler.response_streaming)
    make: Any = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[kind]
    return make(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without a token of the scope their method needs (see :mod:`service.protocols.access`)."""

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        need = self.policy.grpc_scope(method)
        if handler is None or need is None:
            return handler
        try:
            self.policy.check(_authorization(handler_call_details), need, method)
        except ServingError as exc:
            return _refusal(handler, exc)
        return handler
