"""The typed BentoML endpoints (``@bentoml.api`` on :class:`service.service.ModelServer`) over the data plane.

``POST /predict`` and ``POST /models`` (:data:`service.protocols.routes.BENTOML_API`) are answered by
BentoML: its request parsing and validation (a 400 with pydantic's details for a wrong type), its
``/schema.json`` and so ``bentoml.SyncHTTPClient`` / ``AsyncHTTPClient``. The methods on the service
are one line each and call :func:`predict` and :func:`list_models` here, which use the same data plane,
limits and error classes as every other protocol: a :class:`ServingError` is answered with our own
response (:func:`service.protocols.http.error_response`: status, ``{"error": ...}``, ``Retry-After``),
which BentoML sends as it is, instead of its generic 500. These routes do not pass our Admission
middleware, so :func:`answered` opens the call context (request id, ``X-Model-Version``) and the trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from service import context, tracing
from service.dataplane import DataPlane, InferenceRequest
from service.errors import InvalidInput, ServingError
from service.protocols.http import error_response
from service.protocols.native import describe_model
from service.settings import get_settings

PROTOCOL = "bentoml"
"""The ``protocol`` label of the data plane's metrics for these endpoints."""
T = TypeVar("T")


class Prediction(BaseModel):
    """The answer of ``POST /predict``: which version answered, and each output as nested lists."""

    model: str
    version: int
    runtime: str
    outputs: dict[str, list[Any]] = Field(description="Output name -> batch (nested lists, rows first).")


class ModelInfo(BaseModel):
    """One model: its default version, labels and every version (as ``GET /v1/models`` lists them)."""

    name: str
    default_version: int | None
    labels: dict[str, int]
    versions: list[dict[str, Any]]


class ModelList(BaseModel):
    """The answer of ``POST /models``."""

    models: list[ModelInfo]


async def answered(ctx: Any, run: Callable[[], Awaitable[T]], traced: bool = False) -> T:
    """The result of ``run()``, or our error response for a :class:`ServingError`, inside the request's
    call context (:mod:`service.context`: ``X-Request-Id`` and the sticky key from ``ctx.request``'s
    headers; a malformed id is a 400) and, ``traced`` with tracing on, its ``ingress`` span.

    ``ctx`` is the method's ``bentoml.Context``: the answer gets ``X-Request-Id`` and ``X-Model-Version``
    (and ``X-Trace-Id``) through ``ctx.response``, whose status BentoML puts on whatever is returned, so
    an error's status goes there too. BentoML sends a returned Starlette ``Response`` as it is otherwise;
    the cast only tells the type checker what BentoML already allows.
    """
    headers = ctx.request.headers
    try:
        call = context.begin_from(headers.items(), get_settings().sticky_header)
    except ServingError as exc:
        return _failed(ctx, exc)
    trace = None
    if traced and tracing.tracer is not None:
        trace = tracing.tracer.begin(call, PROTOCOL, tracing.carrier(headers.items()),
                                     **{"http.request.method": "POST", "url.path": ctx.request.url.path})  # fmt: skip
    try:
        result = await run()
    except ServingError as exc:
        result = _failed(ctx, exc)
    except BaseException:  # BentoML answers 500 (or the client went away): the span still ends
        if trace is not None:
            trace.responding(500)
            trace.end()
        raise
    echo = ctx.response.headers
    for name, value in call.echo():
        echo[name] = value
    if trace is not None:
        echo[tracing.TRACE_ID_HEADER] = trace.trace_id
        trace.responding(ctx.response.status_code)
        trace.end()
    return result


def _failed(ctx: Any, error: ServingError) -> Any:
    ctx.response.status_code = error.http_status
    return error_response(error)


def _request(
    model: str, inputs: np.ndarray, version: int | None, label: str | None, outputs: list[str] | None
) -> InferenceRequest:
    """The data plane's request, refusing what the native API refuses (same messages)."""
    if version is not None and label is not None:
        raise InvalidInput("give either 'version' or 'label', not both")
    if inputs.dtype.kind not in "iuf":
        what = "booleans" if inputs.dtype.kind == "b" else f"{inputs.dtype} values"
        raise InvalidInput(f"input 'inputs': expected numbers, got {what}", expected="numeric")
    return InferenceRequest(model, {None: inputs}, PROTOCOL, version=version, label=label, outputs=outputs)


async def predict(
    dataplane: DataPlane,
    model: str,
    inputs: np.ndarray,
    version: int | None = None,
    label: str | None = None,
    outputs: list[str] | None = None,
) -> Prediction:
    """One (batched) prediction of ``model``'s default version, ``version`` or ``label``, through the same
    admission as every protocol (in-flight cap, expected queue delay)."""
    dataplane.limits.check_shape("inputs", inputs.shape)
    request = _request(model, inputs, version, label, outputs)
    with dataplane.in_flight(PROTOCOL), dataplane.admitted(PROTOCOL, model, version, label) as ticket:
        request.ticket = ticket
        result = await dataplane.infer(request)
    return Prediction(
        model=result.model,
        version=result.version,
        runtime=result.runtime,
        outputs={name: np.asarray(array).tolist() for name, array in result.outputs.items()},
    )


async def list_models(dataplane: DataPlane) -> ModelList:
    """Every model with its versions, states, signatures and labels."""
    return ModelList(
        models=[ModelInfo(**describe_model(dataplane, name)) for name in dataplane.model_names()]
    )
