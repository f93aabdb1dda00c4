"""What every REST adapter shares: bounded body reading, JSON responses and the one error shape."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service.codecs import dumps
from service.dataplane import DataPlane
from service.errors import InternalError, InvalidInput, PayloadTooLarge, ServingError, status_of

log = logging.getLogger("service.http")
Handler = Callable[[Request], Awaitable[Response]]


def dataplane_of(request: Request) -> DataPlane:
    """The data plane the service attached to the app."""
    return request.app.state.dataplane


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status_code=status, headers=headers, media_type="application/json")


def error_response(error: ServingError, body: Callable[[ServingError], Any] = ServingError.body) -> Response:
    """The error as JSON with its status and headers; ``body`` shapes the JSON (default: all details)."""
    return json_response(body(error), status_of(error)[0], error.headers())


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidInput(f"invalid Content-Length header {declared!r}") from None
        if size > limit:
            raise PayloadTooLarge(f"request body is {size} bytes; the limit is {limit} bytes", limit=limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def guarded(handler: Handler, body: Callable[[ServingError], Any] = ServingError.body) -> Handler:
    """Turn :class:`ServingError` into its JSON error and anything else into a 500 without internals."""

    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except ServingError as exc:
            return error_response(exc, body)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return error_response(InternalError(), body)

    wrapper.__name__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper
