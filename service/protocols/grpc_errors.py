"""What the gRPC adapters share: how a :class:`ServingError` becomes a gRPC status (:func:`abort`, the one
place, used by every method) and the call's deadline as the data plane takes it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import grpc

from service.errors import InternalError, ServingError
from service.protocols.common import deadline_after

log = logging.getLogger("service.grpc")
R = TypeVar("R")


async def abort(context: grpc.aio.ServicerContext, error: ServingError) -> None:
    """End the call with the error's gRPC code and message (``retry-after`` metadata where it has one)."""
    retry_after = error.headers().get("Retry-After")
    if retry_after is not None:
        await context.send_initial_metadata((("retry-after", retry_after),))
    await context.abort(getattr(grpc.StatusCode, error.grpc_code), error.message)


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The event-loop time the client's gRPC deadline runs out (``None``: the call has none)."""
    remaining = context.time_remaining()
    return deadline_after(None if remaining is None else max(remaining, 0.0))


def grpc_guarded(method: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Map :class:`ServingError` to its gRPC status; anything else to INTERNAL without internals."""

    @wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await method(self, request, context)
        except ServingError as exc:
            error = exc
        except Exception:
            log.exception("unhandled error in %s", method.__name__)
            error = InternalError()
        await abort(context, error)
        raise AssertionError("unreachable: abort raises")

    return wrapper
