"""The typed BentoML endpoints (``@bentoml.api`` on :class:`service.service.ModelServer`) over the data plane.

``POST /predict`` and ``POST /models`` (:data:`service.protocols.routes.BENTOML_API`) are answered by
BentoML: its request parsing and validation (a 400 with pydantic's details for a wrong type), its
``/schema.json`` and so ``bentoml.SyncHTTPClient`` / ``AsyncHTTPClient``. The methods on the service
are one line each and call :func:`predict` and :func:`list_models` here, which use the same data plane,
limits and error classes as every other protocol: a :class:`ServingError` is answered with our own
response (:func:`service.protocols.http.error_response`: status, ``{"error": ...}``, ``Retry-After``),
which BentoML sends as it is, instead of its generic 500.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar, cast

import numpy as np
from pydantic import BaseModel, Field

from service.dataplane import DataPlane, InferenceRequest
from service.errors import InvalidInput, ServingError
from service.protocols.http import error_response
from service.protocols.native import describe_model

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


async def answered(call: Awaitable[T]) -> T:
    """The result of ``call``, or our error response for a :class:`ServingError`.

    BentoML sends a returned Starlette ``Response`` unchanged, so the client gets our status, message
    and headers; the cast only tells the type checker what BentoML already allows.
    """
    try:
        return await call
    except ServingError as exc:
        return cast(T, error_response(exc))


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
