"""gRPC side of the one error table: abort with the status code :data:`service.errors.ERROR_TABLE` names."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import grpc

from service.errors import InternalError, ServingError, status_of

log = logging.getLogger("service.grpc")
R = TypeVar("R")


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
        code = getattr(grpc.StatusCode, status_of(error)[1])
        if hasattr(error, "retry_after_s"):
            await context.send_initial_metadata((("retry-after", str(error.retry_after_s)),))
        await context.abort(code, error.message)
        raise AssertionError("unreachable: abort raises")

    return wrapper
