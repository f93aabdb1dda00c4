"""KServe V2 / Open Inference Protocol over REST (``/v2/...``), JSON and binary tensor extension."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import __version__
from service.codecs import parse_version
from service.codecs_v2 import decode_inputs, encode_response, requested_outputs, split_body, v2_datatype
from service.dataplane import InferenceRequest
from service.metrics import observe_payload
from service.protocols.http import dataplane_of, guarded, json_response, read_body
from service.versions import ServedVersion, State

PROTOCOL = "v2_rest"
SERVER_NAME = "keras-serving"
EXTENSIONS = ["binary_tensor_data", "model_repository_metadata"]


def _version(request: Request) -> int | None:
    return parse_version(request.path_params.get("version"))


def model_metadata(sv: ServedVersion, all_versions: list[int]) -> dict[str, Any]:
    """The V2 model metadata document (also used by the gRPC adapter)."""
    meta = sv.metadata
    provider = sv.runtime.provider if sv.runtime is not None and sv.state is State.READY else "none"
    platform = (
        sv.runtime.platform if sv.runtime is not None else {"onnx": "onnx_onnxv1"}.get(sv.runtime_kind, "")
    )

    def tensors(specs: list[Any]) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": v2_datatype(s.dtype), "shape": s.shape} for s in specs]

    return {
        "name": sv.name,
        "versions": [str(v) for v in all_versions],
        "platform": platform,
        "inputs": tensors(meta.inputs) if meta else [],
        "outputs": tensors(meta.outputs) if meta else [],
        "parameters": {"runtime": sv.runtime_kind, "execution_provider": provider, "state": str(sv.state)},
    }


async def server_metadata(_: Request) -> Response:
    return json_response({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})


async def live(_: Request) -> Response:
    return json_response({"live": True})


async def ready(request: Request) -> Response:
    is_ready = dataplane_of(request).ready()
    return json_response({"ready": is_ready}, 200 if is_ready else 503)


@guarded
async def metadata(request: Request) -> Response:
    dataplane = dataplane_of(request)
    name = request.path_params["model"]
    sv = dataplane.find(name, _version(request))
    versions = [v.version for v in dataplane.versions(name) if v.state is not State.UNLOADED]
    return json_response(model_metadata(sv, versions))


@guarded
async def model_ready(request: Request) -> Response:
    dataplane = dataplane_of(request)
    sv = dataplane.find(request.path_params["model"], _version(request))
    ok = sv.state is State.READY
    return json_response({"name": sv.name, "ready": ok}, 200 if ok else 503)


@guarded
async def infer(request: Request) -> Response:
    dataplane = dataplane_of(request)
    name = request.path_params["model"]
    body = await read_body(request, dataplane.registry.settings.max_body_bytes)
    payload, binary = split_body(body, request.headers.get("inference-header-content-length"))
    inputs = decode_inputs(payload, binary)
    wanted, binary_out = requested_outputs(payload)
    result = await dataplane.infer(
        InferenceRequest(name, inputs, PROTOCOL, version=_version(request), outputs=wanted)
    )
    header: dict[str, Any] = {"model_name": result.model, "model_version": str(result.version)}
    if "id" in payload:
        header["id"] = payload["id"]
    content, header_length = encode_response(header, result.outputs, binary_out)
    observe_payload(result.model, PROTOCOL, len(body), len(content))
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(header_length)},
    )


routes = [
    Route("/v2", server_metadata, methods=["GET"]),
    Route("/v2/health/live", live, methods=["GET"]),
    Route("/v2/health/ready", ready, methods=["GET"]),
    Route("/v2/models/{model}", metadata, methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}", metadata, methods=["GET"]),
    Route("/v2/models/{model}/ready", model_ready, methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}/ready", model_ready, methods=["GET"]),
    Route("/v2/models/{model}/infer", infer, methods=["POST"]),
    Route("/v2/models/{model}/versions/{version}/infer", infer, methods=["POST"]),
]
