"""TensorFlow Serving's REST API: ``/v1/models/{m}[/versions/{v}|/labels/{l}][:predict|/metadata]``.

Row format ``{"instances": [...]}`` -> ``{"predictions": [...]}``; columnar ``{"inputs": ...}`` ->
``{"outputs": ...}``; named inputs as objects; ``{"b64": "..."}`` values decoded. Errors are TF Serving's
``{"error": "..."}`` with its HTTP status codes.
"""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.dataplane import InferenceRequest
from service.errors import ServingError
from service.metrics import observe_payload
from service.protocols.common import parse_version
from service.protocols.http import client_watch, dataplane_of, deadline_of, guarded, json_response, read_body
from service.protocols.json import loads_with_tensors
from service.protocols.tensor_json import Path
from service.protocols.tfserving.codec import decode_b64, format_outputs, parse_predict
from service.protocols.tfserving.spec import model_status, signature_def_map

PROTOCOL = "tfserving_rest"


def _error_body(error: ServingError) -> dict[str, str]:
    return {"error": error.message}


tf_guarded = partial(guarded, body=_error_body)


def _target(request: Request) -> tuple[str, int | None, str | None]:
    params = request.path_params
    return params["model"], parse_version(params.get("version")), params.get("label")


def _is_tensor(path: Path) -> bool:
    """Row format's ``instances`` (unnamed), or columnar ``inputs`` itself or one of its names."""
    if path[0] == "instances":
        return len(path) == 1
    return path[0] == "inputs" and (len(path) == 1 or (len(path) == 2 and isinstance(path[1], str)))


@tf_guarded
async def predict(request: Request) -> Response:
    dataplane = dataplane_of(request)
    name, version, label = _target(request)
    deadline = deadline_of(request)
    with dataplane.admitted(PROTOCOL, name, version, label) as ticket:
        body = await read_body(request)
        payload = loads_with_tensors(body, _is_tensor, dataplane.limits)
        if b'"b64"' in body:
            payload = decode_b64(payload, dataplane.limits.max_json_depth + 2)
        inputs, row = parse_predict(payload, dataplane.limits)
        result = await dataplane.infer(
            InferenceRequest(
                name,
                inputs,
                PROTOCOL,
                version=version,
                label=label,
                deadline=deadline,
                watch=client_watch(request),
                ticket=ticket,
            )
        )
    response = json_response(format_outputs(result.outputs, row))
    observe_payload(result.model, PROTOCOL, len(body), len(response.body))
    return response


@tf_guarded
async def status(request: Request) -> Response:
    return json_response(model_status(dataplane_of(request), *_target(request)))


@tf_guarded
async def metadata(request: Request) -> Response:
    name, version, label = _target(request)
    view = dataplane_of(request).find(name, version, label)
    return json_response(
        {
            "model_spec": {"name": view.name, "signature_name": "", "version": str(view.version)},
            "metadata": {"signature_def": signature_def_map(view)},
        }
    )


_BASES = ["/v1/models/{model}", "/v1/models/{model}/versions/{version}", "/v1/models/{model}/labels/{label}"]
routes = [
    *(Route(base + ":predict", predict, methods=["POST"]) for base in _BASES),
    *(Route(base + "/metadata", metadata, methods=["GET"]) for base in _BASES),
    *(Route(base, status, methods=["GET"]) for base in _BASES),
]
