"""The call context: what one request carries across layers without every signature passing it on.

A protocol's ingress (the HTTP :class:`~service.protocols.admission.Admission` middleware, the gRPC
``grpc_guarded`` wrapper) opens a :class:`Call` with the client's request id (``X-Request-Id``, or one made
here) and its sticky routing key; the data plane reads it and writes back which version answered; the
ingress echoes both on the answer (HTTP headers ``X-Request-Id`` and ``X-Model-Version``, gRPC trailing
metadata ``x-request-id`` and ``x-model-version``), errors included; when a traffic split chose the
version, also its variant (``X-Model-Variant`` / ``x-model-variant``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.errors import InvalidInput

if TYPE_CHECKING:
    from service.tracing import Trace

REQUEST_ID_HEADER = "x-request-id"
VERSION_HEADER = "x-model-version"
VARIANT_HEADER = "x-model-variant"
MAX_REQUEST_ID = 128

_prefix = os.urandom(6).hex()
_counter = itertools.count(1)


def new_request_id() -> str:
    """A request id unique across workers and restarts: a random per-process prefix and a counter."""
    return f"{_prefix}-{next(_counter):x}"


def check_request_id(value: str, where: str = "X-Request-Id") -> str:
    """``value`` if it is 1-128 visible ASCII characters (it is echoed in headers and logs), else 400."""
    if not 0 < len(value) <= MAX_REQUEST_ID or not value.isascii() or not value.isprintable() or " " in value:
        shown = value[:40] + ("..." if len(value) > 40 else "")
        raise InvalidInput(
            f"{where} must be 1-{MAX_REQUEST_ID} visible ASCII characters without spaces; got {shown!r} "
            f"({len(value)} characters)"
        )
    return value


@dataclass(slots=True)
class Call:
    """One request as it crosses the layers."""

    request_id: str
    route_key: str | None = None
    """The sticky routing key (the ``sticky_header`` setting's header): the same key, the same variant."""
    model: str | None = None
    """Set by the data plane: the model that answered (the request log names it)."""
    version: int | None = None
    """Set by the data plane: the model version that answered."""
    variant: str | None = None
    """Set by the traffic split (:mod:`service.ops.traffic`): the variant (label or version) it chose."""
    trace: Trace | None = None
    """The request's spans (:mod:`service.tracing`) while tracing is on; ``None`` otherwise."""
    error: str | None = None
    """The message of the error the request was answered with (the request log writes it)."""
    status: int | None = None
    """The HTTP status of the answer, once it started (the request log writes it)."""

    def echo(self) -> tuple[tuple[str, str], ...]:
        """What every answer carries back (lower-case names): the request id, and the version that
        answered and the traffic variant once known. HTTP headers and gRPC trailing metadata alike."""
        echo: tuple[tuple[str, str], ...] = ((REQUEST_ID_HEADER, self.request_id),)
        if self.version is not None:
            echo = (*echo, (VERSION_HEADER, str(self.version)))
        if self.variant is not None:
            echo = (*echo, (VARIANT_HEADER, self.variant))
        return echo


_current: ContextVar[Call | None] = ContextVar("serving_call", default=None)


def begin(request_id: str | None, route_key: str | None = None) -> Call:
    """Open the call of the running task (its request id checked, or a new one)."""
    call = Call(new_request_id() if request_id is None else check_request_id(request_id), route_key)
    _current.set(call)
    return call


def begin_from(pairs: Iterable[tuple[str | bytes, str | bytes]], sticky: str) -> Call:
    """:func:`begin` with the request id and the sticky routing key (the header named ``sticky``, none
    when empty) found among lower-case header or metadata ``pairs``: ASGI's byte pairs, Starlette's or
    gRPC's string pairs (gRPC gives binary metadata as bytes)."""
    request_id = route_key = None
    sticky = sticky.lower()
    for name, value in pairs:
        key = name.decode("latin-1") if isinstance(name, bytes) else name
        if key == REQUEST_ID_HEADER:
            request_id = value.decode("latin-1") if isinstance(value, bytes) else value
        elif sticky and key == sticky:
            route_key = value.decode("latin-1") if isinstance(value, bytes) else value
    return begin(request_id, route_key)


def adopt(request_id: str | None, where: str) -> str | None:
    """Make a protocol's own request id (V2 ``id``) the call's, checked; ``None`` leaves the call's."""
    if request_id is None:
        return None
    if not isinstance(request_id, str):
        raise InvalidInput(f"{where} must be a string, got {type(request_id).__name__}")
    check_request_id(request_id, where)
    call = _current.get()
    if call is not None:
        call.request_id = request_id
    return request_id


def current() -> Call | None:
    """The running task's call, if a protocol ingress opened one."""
    return _current.get()
