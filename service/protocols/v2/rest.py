"""KServe V2 / Open Inference Protocol over REST (``/v2/...``), JSON and binary tensor extension, and
Triton's model configuration, repository (:mod:`service.protocols.v2.repository`), statistics
(:mod:`service.protocols.v2.statistics`), classification (:mod:`service.protocols.v2.classification`)
and logging (:mod:`service.protocols.v2.log_settings`) extensions."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import context
from service.dataplane import InferenceRequest
from service.errors import InvalidInput
from service.metrics import observe_payload
from service.protocols.common import deadline_after, earliest, parse_version
from service.protocols.http import client_watch, dataplane_of, deadline_of, guarded, json_response, read_body
from service.protocols.json import loads_or_empty
from service.protocols.v2.classification import answer_outputs, class_counts
from service.protocols.v2.codec import (
    decode_inputs,
    encode_response,
    requested_outputs,
    split_body,
    timeout_s,
)
from service.protocols.v2.log_settings import log_settings, update_log_settings
from service.protocols.v2.repository import model_config, refuse_control, repository_index
from service.protocols.v2.spec import model_metadata, server_metadata
from service.protocols.v2.statistics import model_statistics, targets

PROTOCOL = "v2_rest"


def _target(request: Request) -> tuple[str, int | None]:
    return request.path_params["model"], parse_version(request.path_params.get("version"))


async def metadata_of_server(_: Request) -> Response:
    return json_response(server_metadata())


async def live(_: Request) -> Response:
    return json_response({"live": True})


async def ready(request: Request) -> Response:
    is_ready = dataplane_of(request).ready()
    return json_response({"ready": is_ready}, 200 if is_ready else 503)


@guarded
async def metadata(request: Request) -> Response:
    return json_response(model_metadata(dataplane_of(request), *_target(request)))


@guarded
async def model_ready(request: Request) -> Response:
    view = dataplane_of(request).find(*_target(request))
    return json_response({"name": view.name, "ready": view.ready}, 200 if view.ready else 503)


@guarded
async def config(request: Request) -> Response:
    return json_response(model_config(dataplane_of(request), *_target(request)))


@guarded
async def statistics(request: Request) -> Response:
    """Every version's statistics, a model's, or one version's (404 for unknown ones)."""
    name = request.path_params.get("model")
    versions = targets(dataplane_of(request), name, parse_version(request.path_params.get("version")))
    return json_response(await asyncio.to_thread(model_statistics, versions))


@guarded
async def index(request: Request) -> Response:
    """Every known version, or with ``{"ready": true}`` the ready ones (an empty body is ``{}``)."""
    body = await read_body(request)
    payload = loads_or_empty(body)
    ready = payload.get("ready", False) if isinstance(payload, dict) else None
    if not isinstance(ready, bool):
        raise InvalidInput(f'the body must be {{}} or {{"ready": true|false}}, got {bytes(body[:200])!r}')
    return json_response(repository_index(dataplane_of(request), ready))


@guarded
async def control(request: Request) -> Response:
    """Explicit load or unload: refused, saying how the repository decides instead."""
    action = request.url.path.rsplit("/", 1)[1]
    raise refuse_control(dataplane_of(request), action, request.path_params["model"])


@guarded
async def logging_settings(request: Request) -> Response:
    """Triton's log settings (GET), or changed in every worker (POST; a JSON object of the new values)."""
    if request.method == "GET":
        return json_response(log_settings())
    body = await read_body(request)
    return json_response(await asyncio.to_thread(update_log_settings, loads_or_empty(body)))


@guarded
async def infer(request: Request) -> Response:
    dataplane = dataplane_of(request)
    name, version = _target(request)
    deadline = deadline_of(request)
    with dataplane.admitted(PROTOCOL, name, version) as ticket:
        body = await read_body(request)
        payload, binary = split_body(
            body, request.headers.get("inference-header-content-length"), dataplane.limits
        )
        timeout = timeout_s(payload)
        inputs = decode_inputs(payload, binary, dataplane.limits)
        wanted, binary_out = requested_outputs(payload)
        counts = class_counts(payload)
        request_id = context.adopt(payload.get("id"), "the request's id")
        result = await dataplane.infer(
            InferenceRequest(
                name,
                inputs,
                PROTOCOL,
                version=version,
                outputs=wanted,
                typed=True,
                deadline=earliest(deadline, deadline_after(timeout)),
                watch=client_watch(request),
                ticket=ticket,
                request_id=request_id,
            )
        )
    header: dict[str, Any] = {
        "id": result.request_id,
        "model_name": result.model,
        "model_version": str(result.version),
    }
    content, header_length = encode_response(header, answer_outputs(dataplane, result, counts), binary_out)
    observe_payload(result.model, PROTOCOL, len(body), len(content))
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(header_length)},
    )


routes = [
    Route("/v2/models/stats", statistics, methods=["GET"]),  # before /v2/models/{model}, as Triton reads it
    Route("/v2", metadata_of_server, methods=["GET"]),
    Route("/v2/health/live", live, methods=["GET"]),
    Route("/v2/health/ready", ready, methods=["GET"]),
    Route("/v2/models/{model}", metadata, methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}", metadata, methods=["GET"]),
    Route("/v2/models/{model}/ready", model_ready, methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}/ready", model_ready, methods=["GET"]),
    Route("/v2/models/{model}/infer", infer, methods=["POST"]),
    Route("/v2/models/{model}/versions/{version}/infer", infer, methods=["POST"]),
    Route("/v2/models/{model}/config", config, methods=["GET"]),
    Route("/v2/models/{model}/stats", statistics, methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}/stats", statistics, methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}/config", config, methods=["GET"]),
    Route("/v2/repository/index", index, methods=["POST"]),
    Route("/v2/logging", logging_settings, methods=["GET", "POST"]),
    Route("/v2/repository/models/{model}/load", control, methods=["POST"]),
    Route("/v2/repository/models/{model}/unload", control, methods=["POST"]),
]
