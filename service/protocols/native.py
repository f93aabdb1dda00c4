"""The native REST API: ``POST /v1/predict``, ``GET /v1/models``, ``GET /readyz/{model}``.

Request::

    {"model": "cnn", "version": 2 | "label": "stable" (optional),
     "inputs": [[...]] | {"pixels": [[...]]}, "outputs": ["probabilities"] (optional)}

Response: ``{"model", "version", "runtime", "outputs": {name: nested list}}``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.batching import Ticket
from service.dataplane import DataPlane, InferenceRequest, VersionView
from service.errors import InvalidInput, Unavailable
from service.limits import DEFAULT_LIMITS, Limits
from service.metrics import observe_payload
from service.protocols.http import (
    client_watch,
    dataplane_of,
    deadline_of,
    error_response,
    guarded,
    json_response,
    read_body,
)
from service.protocols.json import json_to_array, loads_with_tensors
from service.protocols.tensor_json import Path

PROTOCOL = "native"


def parse_predict(payload: Any, limits: Limits = DEFAULT_LIMITS) -> InferenceRequest:
    """Decode the native predict body into an :class:`InferenceRequest` (400 on anything malformed,
    413 over the request limits)."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"expected a JSON object, got {type(payload).__name__}")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInput("field 'model' (string) is required")
    version = payload.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise InvalidInput(f"field 'version' must be a positive integer, got {version!r}")
    label = payload.get("label")
    if label is not None and not isinstance(label, str):
        raise InvalidInput(f"field 'label' must be a string, got {label!r}")
    if version is not None and label is not None:
        raise InvalidInput("give either 'version' or 'label', not both")
    if "inputs" not in payload:
        raise InvalidInput("field 'inputs' is required: a batch (list) or an object of named batches")
    raw = payload["inputs"]
    if isinstance(raw, dict):
        if not raw:
            raise InvalidInput("field 'inputs' is an empty object")
        limits.check_count("inputs", len(raw))
        inputs: dict[str | None, Any] = {str(k): json_to_array(v, str(k), limits) for k, v in raw.items()}
    else:
        inputs = {None: json_to_array(raw, "inputs", limits)}
    outputs = payload.get("outputs")
    if outputs is not None and (
        not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs)
    ):
        raise InvalidInput("field 'outputs' must be a list of output names")
    return InferenceRequest(model, inputs, PROTOCOL, version=version, label=label, outputs=outputs)


def _admitted(dataplane: DataPlane, payload: Any) -> AbstractContextManager[Ticket | None]:
    """Admission as soon as the body names its target, before its tensors are converted; a malformed
    target is left to :func:`parse_predict`'s 400."""
    if not isinstance(payload, dict):
        return nullcontext()
    model, version, label = payload.get("model"), payload.get("version"), payload.get("label")
    if not isinstance(model, str) or not model or (version is not None and label is not None):
        return nullcontext()
    if version is not None and (type(version) is not int or version < 1):
        return nullcontext()
    if label is not None and not isinstance(label, str):
        return nullcontext()
    return dataplane.admitted(PROTOCOL, model, version, label)


def _is_tensor(path: Path) -> bool:
    """``inputs`` itself, or one of its named inputs."""
    return path[0] == "inputs" and (len(path) == 1 or (len(path) == 2 and isinstance(path[1], str)))


@guarded
async def predict(request: Request) -> Response:
    """Run one (batched) prediction."""
    dataplane = dataplane_of(request)
    deadline = deadline_of(request)
    body = await read_body(request)
    payload = loads_with_tensors(body, _is_tensor, dataplane.limits)
    with _admitted(dataplane, payload) as ticket:
        infer = parse_predict(payload, dataplane.limits)
        del payload  # its Python lists must not live through the wait (garbage collection scans them)
        infer.deadline, infer.watch, infer.ticket = deadline, client_watch(request), ticket
        result = await dataplane.infer(infer)
    response = json_response(
        {
            "model": result.model,
            "version": result.version,
            "runtime": result.runtime,
            "outputs": result.outputs,
        }
    )
    observe_payload(result.model, PROTOCOL, len(body), len(response.body))
    return response


def describe_version(view: VersionView) -> dict[str, Any]:
    """One version in ``GET /v1/models``: state, runtime and provider, signature, class labels, input
    contract, and from its ``metadata.json`` the example batch (real held-out inputs), the training
    metrics and the parity figures."""
    meta = view.metadata
    return {
        "version": view.version,
        "state": str(view.state),
        "error": view.error,
        "runtime": view.runtime,
        "provider": view.provider,
        "load_seconds": view.load_seconds,
        "inputs": [s.model_dump() for s in meta.inputs] if meta else None,
        "outputs": [s.model_dump() for s in meta.outputs] if meta else None,
        "class_labels": meta.labels if meta else None,
        "input_contract": meta.input_contract if meta else None,
        "example": meta.example if meta else None,
        "metrics": meta.metrics if meta else None,
        "parity": meta.parity.model_dump() if meta else None,
    }


def describe_model(dataplane: DataPlane, name: str) -> dict[str, Any]:
    """One model in ``GET /v1/models``: default version, labels and every version."""
    return {
        "name": name,
        "default_version": dataplane.default_version(name),
        "labels": dataplane.labels(name),
        "versions": [describe_version(v) for v in dataplane.versions(name)],
    }


@guarded
async def list_models(request: Request) -> Response:
    """Every model with its versions, states, signatures, labels and default version."""
    dataplane = dataplane_of(request)
    return json_response({"models": [describe_model(dataplane, n) for n in dataplane.model_names()]})


@guarded
async def model_ready(request: Request) -> Response:
    """200 when the model has a ready default version, else 503 (with ``Retry-After``) and the reason."""
    model = request.path_params["model"]
    ready, reason = dataplane_of(request).model_ready(model)
    if not ready:
        return error_response(Unavailable(f"model {model!r} is not ready: {reason}", model=model, ready=False,
                                          reason=reason))  # fmt: skip
    return json_response({"model": model, "ready": True, "reason": reason})


routes = [
    Route("/v1/predict", predict, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/readyz/{model}", model_ready, methods=["GET"]),
]
