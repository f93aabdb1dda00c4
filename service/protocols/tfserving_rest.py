"""TensorFlow Serving's REST API: ``/v1/models/{m}[/versions/{v}|/labels/{l}][:predict|/metadata]``.

Row format ``{"instances": [...]}`` -> ``{"predictions": [...]}``; columnar ``{"inputs": ...}`` ->
``{"outputs": ...}``; named inputs as objects; ``{"b64": "..."}`` values decoded. Errors are TF Serving's
``{"error": "..."}`` with its HTTP status codes.
"""

from __future__ import annotations

import base64
import binascii
from functools import partial
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.codecs import json_to_array, loads, parse_version
from service.dataplane import InferenceRequest
from service.errors import InvalidInput, ServingError
from service.metrics import observe_payload
from service.protocols.http import dataplane_of, guarded, json_response, read_body
from service.versions import ServedVersion, State

PROTOCOL = "tfserving_rest"
SIGNATURE = "serving_default"
TF_STATES = {
    State.LOADING: "LOADING",
    State.READY: "AVAILABLE",
    State.FAILED: "END",
    State.UNLOADING: "UNLOADING",
    State.UNLOADED: "END",
}
TF_DTYPES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int32": "DT_INT32", "int64": "DT_INT64"}


def _error_body(error: ServingError) -> dict[str, str]:
    return {"error": error.message}


tf_guarded = partial(guarded, body=_error_body)


def _target(request: Request) -> tuple[str, int | None, str | None]:
    params = request.path_params
    return params["model"], parse_version(params.get("version")), params.get("label")


def _decode_b64(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"b64"} and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except binascii.Error as exc:
                raise InvalidInput(f"invalid base64 value: {exc}") from None
        return {k: _decode_b64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def parse_predict(payload: Any) -> tuple[dict[str | None, np.ndarray], bool]:
    """Inputs of a predict body and whether it used the row (``instances``) format."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"expected a JSON object, got {type(payload).__name__}")
    signature = payload.get("signature_name", SIGNATURE)
    if signature != SIGNATURE:
        raise InvalidInput(f"signature {signature!r} not found; this model has {SIGNATURE!r}")
    if ("instances" in payload) == ("inputs" in payload):
        raise InvalidInput(
            "request must have exactly one of 'instances' (row format) or 'inputs' (columnar format)"
        )
    if "instances" in payload:
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("'instances' must be a non-empty list")
        if isinstance(instances[0], dict):
            keys = set(instances[0])
            if not all(isinstance(i, dict) and set(i) == keys for i in instances):
                raise InvalidInput(f"every instance must name the same inputs {sorted(keys)}")
            return {k: json_to_array([i[k] for i in instances], k) for k in keys}, True
        return {None: json_to_array(instances, "instances")}, True
    inputs = payload["inputs"]
    if isinstance(inputs, dict):
        return {k: json_to_array(v, k) for k, v in inputs.items()}, False
    return {None: json_to_array(inputs, "inputs")}, False


def format_outputs(outputs: dict[str, np.ndarray], row: bool) -> dict[str, Any]:
    if len(outputs) == 1:
        value: Any = next(iter(outputs.values()))
        return {"predictions": value} if row else {"outputs": value}
    if not row:
        return {"outputs": outputs}
    rows = len(next(iter(outputs.values())))
    return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(rows)]}


@tf_guarded
async def predict(request: Request) -> Response:
    dataplane = dataplane_of(request)
    name, version, label = _target(request)
    body = await read_body(request, dataplane.registry.settings.max_body_bytes)
    payload = loads(body)
    if b'"b64"' in body:
        payload = _decode_b64(payload)
    inputs, row = parse_predict(payload)
    result = await dataplane.infer(InferenceRequest(name, inputs, PROTOCOL, version=version, label=label))
    response = json_response(format_outputs(result.outputs, row))
    observe_payload(result.model, PROTOCOL, len(body), len(response.body))
    return response


def version_status(sv: ServedVersion) -> dict[str, Any]:
    failed = sv.state is State.FAILED
    return {
        "version": str(sv.version),
        "state": TF_STATES[sv.state],
        "status": {"error_code": "UNKNOWN" if failed else "OK", "error_message": sv.error or ""},
    }


@tf_guarded
async def status(request: Request) -> Response:
    dataplane = dataplane_of(request)
    name, version, label = _target(request)
    if version is None and label is None:
        versions = dataplane.versions(name)
    else:
        versions = [dataplane.find(name, version, label)]
    return json_response({"model_version_status": [version_status(sv) for sv in versions]})


def signature_def(sv: ServedVersion) -> dict[str, Any]:
    """The ``serving_default`` signature in TF Serving's JSON layout."""

    def tensors(specs: list[Any]) -> dict[str, Any]:
        return {
            s.name: {
                "dtype": TF_DTYPES[s.dtype],
                "tensor_shape": {
                    "dim": [{"size": str(d), "name": ""} for d in s.shape],
                    "unknown_rank": False,
                },
                "name": s.name,
            }
            for s in specs
        }

    meta = sv.metadata
    sig = {
        "inputs": tensors(meta.inputs) if meta else {},
        "outputs": tensors(meta.outputs) if meta else {},
        "method_name": "tensorflow/serving/predict",
    }
    return {"signature_def": {SIGNATURE: sig}}


@tf_guarded
async def metadata(request: Request) -> Response:
    dataplane = dataplane_of(request)
    name, version, label = _target(request)
    sv = dataplane.find(name, version, label)
    return json_response(
        {
            "model_spec": {"name": sv.name, "signature_name": "", "version": str(sv.version)},
            "metadata": {"signature_def": signature_def(sv)},
        }
    )


_BASES = ["/v1/models/{model}", "/v1/models/{model}/versions/{version}", "/v1/models/{model}/labels/{label}"]
routes = [
    *(Route(base + ":predict", predict, methods=["POST"]) for base in _BASES),
    *(Route(base + "/metadata", metadata, methods=["GET"]) for base in _BASES),
    *(Route(base, status, methods=["GET"]) for base in _BASES),
]
