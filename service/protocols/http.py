"""What every REST adapter shares: bounded body reading, JSON responses and the one error shape.

:func:`error_response` is the one place a :class:`ServingError` becomes an HTTP answer: every REST route
(through :func:`guarded`) and the fast lane's 504 use it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service import context
from service.dataplane import DataPlane
from service.errors import ClientGone, InternalError, InvalidInput, NotFound, PayloadTooLarge, ServingError
from service.protocols.common import deadline_after, parse_timeout
from service.protocols.encoding import decode_body
from service.protocols.json import dumps

log = logging.getLogger("service.http")
Handler = Callable[[Request], Awaitable[Response]]
ErrorBody = Callable[[ServingError], Any]
TIMEOUT_HEADER = "x-request-timeout-ms"
"""The client's time budget for one request, in milliseconds (``X-Request-Timeout-Ms: 50``)."""


def dataplane_of(request: Request) -> DataPlane:
    """The data plane the service attached to the app."""
    return request.app.state.dataplane


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status_code=status, headers=headers, media_type="application/json")


def error_response(error: ServingError, body: ErrorBody = ServingError.body) -> Response:
    """The error as JSON with its status and headers; ``body`` shapes the JSON (default: all details).
    The request's call keeps the message (for the request log)."""
    call = context.current()
    if call is not None:
        call.error = error.message
    return json_response(body(error), error.http_status, error.headers())


async def read_body(request: Request) -> bytes | bytearray:
    """The request body, refusing (413) anything over the data plane's body limit before reading it all;
    a compressed one (``Content-Encoding``) decoded within that limit (:mod:`service.protocols.encoding`).
    A body that arrived whole (a large one read straight into one buffer, :mod:`service.bento.bodyread`,
    is a ``bytearray``) is returned as it came, not copied."""
    limit = dataplane_of(request).max_body_bytes
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
        if chunk:  # Starlette ends the stream with an empty chunk
            chunks.append(chunk)
    body = b"" if not chunks else chunks[0] if len(chunks) == 1 else b"".join(chunks)
    coding = request.headers.get("content-encoding")
    return body if coding is None else decode_body(body, coding, limit)


def guarded(handler: Handler, body: ErrorBody = ServingError.body) -> Handler:
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


def asset_type(assets: dict[str, str], name: str, folder: str) -> str:
    """The content type of ``name`` among a page's files (``assets``, under ``/folder``); 404 (our JSON
    error, naming the files) for any other name, so no path can reach another file."""
    media_type = assets.get(name)
    if media_type is None:
        raise NotFound(f"no file {name!r} under /{folder}; the page's files are {sorted(assets)}")
    return media_type


def deadline_of(request: Request) -> float | None:
    """The event-loop time the client's ``X-Request-Timeout-Ms`` runs out (``None`` without the header)."""
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    return deadline_after(parse_timeout(raw, 1e-3, "the X-Request-Timeout-Ms header (milliseconds)"))


def client_watch(request: Request) -> Callable[[Awaitable[Any]], Awaitable[Any]]:
    """A watch for :class:`~service.dataplane.InferenceRequest`: runs the work, cancels it when the
    client disconnects first (:class:`ClientGone`)."""
    receive = request.receive

    async def watch(work: Awaitable[Any]) -> Any:
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
            gone.cancel()
        if task.done() and not task.cancelled():
            return task.result()
        raise ClientGone("the client closed the connection before the answer was ready")

    return watch


async def _disconnected(receive: Callable[[], Awaitable[Any]]) -> None:
    """Return once the client has gone (the body has been read already, so nothing else arrives)."""
    while (await receive())["type"] != "http.disconnect":
        pass
