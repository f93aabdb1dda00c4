"""What the gRPC adapters share: how a :class:`ServingError` becomes a gRPC status (:func:`abort`, the one
place, used by every method), the call's deadline as the data plane takes it, and the call context
(``x-request-id`` in, ``x-request-id`` and ``x-model-version`` out as trailing metadata, errors included);
with tracing on, the inference methods' ``ingress`` span (``traceparent`` in, ``x-trace-id`` out); with
``log_verbose_level`` 1 or more, each call's request log line (:mod:`service.server_log`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from logging import DEBUG
from time import perf_counter
from typing import Any, TypeVar

import grpc

from service import context, tracing
from service.errors import ClientGone, InternalError, ServingError
from service.protocols.common import deadline_after
from service.server_log import REQUESTS, log_request
from service.settings import get_settings

log = logging.getLogger("service.grpc")
R = TypeVar("R")


async def abort(
    context: grpc.aio.ServicerContext, error: ServingError, trailing: tuple[tuple[str, str], ...] = ()
) -> None:
    """End the call with the error's gRPC code and message (``retry-after`` metadata where it has one)."""
    retry_after = error.headers().get("Retry-After")
    if retry_after is not None:
        await context.send_initial_metadata((("retry-after", retry_after),))
    await context.abort(getattr(grpc.StatusCode, error.grpc_code), error.message, trailing)


def open_call(grpc_context: grpc.aio.ServicerContext) -> context.Call:
    """The call context from the client's metadata: ``x-request-id`` (checked, or a new one) and the
    sticky routing key (the ``sticky_header`` setting, lower-cased as gRPC keys are)."""
    return context.begin_from(grpc_context.invocation_metadata() or (), get_settings().sticky_header)


def _echo(call: context.Call | None) -> tuple[tuple[str, str], ...]:
    return () if call is None else call.echo()


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The event-loop time the client's gRPC deadline runs out (``None``: the call has none)."""
    remaining = context.time_remaining()
    return deadline_after(None if remaining is None else max(remaining, 0.0))


TRACED = {"Predict": "tfserving_grpc", "ModelInfer": "v2_grpc"}
"""The inference methods, traced when tracing is on (:mod:`service.tracing`), and their protocols
(each adapter's ``PROTOCOL``, which imports this module)."""


def _trace(
    tracer: tracing.Tracer, call: context.Call, grpc_context: grpc.aio.ServicerContext, name: str
) -> tracing.Trace:
    """The ``ingress`` span of an inference call, the client's ``traceparent`` metadata its parent."""
    carrier = tracing.carrier(grpc_context.invocation_metadata() or ())
    return tracer.begin(call, TRACED[name], carrier, **{"rpc.system": "grpc", "rpc.method": name})


def _traced(trace: tracing.Trace, error: ServingError | None) -> tuple[tuple[str, str], ...]:
    """End ``trace`` with the call's status; the trailing metadata entry naming its trace id."""
    if error is None:
        trace.responding(200, grpc.StatusCode.OK.value[0])
    else:
        trace.responding(error.http_status, getattr(grpc.StatusCode, error.grpc_code).value[0])
    trace.end()
    return ((tracing.TRACE_ID_HEADER, trace.trace_id),)


def grpc_guarded(method: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Map :class:`ServingError` to its gRPC status; anything else to INTERNAL without internals."""
    name = method.__name__
    traced = name in TRACED

    @wraps(method)
    async def wrapper(self: Any, request: Any, grpc_context: grpc.aio.ServicerContext) -> R:
        call = trace = None
        logged_from = perf_counter() if REQUESTS.isEnabledFor(DEBUG) else None  # the request log is on
        try:
            call = open_call(grpc_context)
            if traced and tracing.tracer is not None:
                trace = _trace(tracing.tracer, call, grpc_context, name)
            response = await method(self, request, grpc_context)
            echo = _echo(call) if trace is None else (*_echo(call), *_traced(trace, None))
            grpc_context.set_trailing_metadata(echo)
            if logged_from is not None:
                log_request("gRPC", name, "OK", perf_counter() - logged_from, call)
            return response
        except ServingError as exc:
            error = exc
        except Exception:
            log.exception("unhandled error in %s", name)
            error = InternalError()
        except BaseException:  # cancelled: the client went away
            if trace is not None:
                _traced(trace, ClientGone("cancelled"))
            if logged_from is not None:
                log_request("gRPC", name, "CANCELLED", perf_counter() - logged_from, call)
            raise
        echo = _echo(call) if trace is None else (*_echo(call), *_traced(trace, error))
        if logged_from is not None:
            log_request("gRPC", name, error.grpc_code, perf_counter() - logged_from, call, error.message)
        await abort(grpc_context, error, echo)
        raise AssertionError("unreachable: abort raises")

    return wrapper
