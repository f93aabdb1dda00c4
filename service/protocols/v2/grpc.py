"""KServe V2 / Open Inference Protocol over gRPC (``inference.GRPCInferenceService``), with the
service definition that ships in ``tritonclient``."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from service import context as call_context
from service.dataplane import DataPlane, InferenceRequest
from service.protocols.common import deadline_after, earliest, parse_version
from service.protocols.grpc_errors import deadline_of, grpc_guarded
from service.protocols.v2.classification import answer_outputs, grpc_class_counts
from service.protocols.v2.codec import decode_grpc_inputs, fill_grpc_outputs, grpc_timeout_s
from service.protocols.v2.log_settings import grpc_changes, grpc_response, log_settings, update_log_settings
from service.protocols.v2.repository import model_config, refuse_control, repository_index
from service.protocols.v2.spec import model_metadata, server_metadata
from service.protocols.v2.statistics import model_statistics, targets

PROTOCOL = "v2_grpc"


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    """ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer; ModelConfig,
    ModelStatistics, RepositoryIndex, LogSettings and (refused) RepositoryModelLoad / Unload of Triton's
    extensions."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerReadyResponse(ready=self.dataplane.ready())

    @grpc_guarded
    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        view = self.dataplane.find(request.name, parse_version(request.version))
        return service_pb2.ModelReadyResponse(ready=view.ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerMetadataResponse(**server_metadata())

    @grpc_guarded
    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        doc = model_metadata(self.dataplane, request.name, parse_version(request.version))
        response = service_pb2.ModelMetadataResponse(
            name=doc["name"], versions=doc["versions"], platform=doc["platform"]
        )
        for key in ("inputs", "outputs"):
            for t in doc[key]:
                getattr(response, key).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return response

    @grpc_guarded
    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        doc = model_config(self.dataplane, request.name, parse_version(request.version))
        return service_pb2.ModelConfigResponse(
            config=json_format.ParseDict(doc, model_config_pb2.ModelConfig())
        )

    @grpc_guarded
    async def ModelStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        name = request.name or None  # no name: every model (a version without a name is ignored)
        versions = targets(self.dataplane, name, parse_version(request.version) if name else None)
        doc = await asyncio.to_thread(model_statistics, versions)
        return json_format.ParseDict(doc, service_pb2.ModelStatisticsResponse())

    @grpc_guarded
    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        models = repository_index(self.dataplane, request.ready)
        return service_pb2.RepositoryIndexResponse(models=models)

    @grpc_guarded
    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise refuse_control(self.dataplane, "load", request.model_name)

    @grpc_guarded
    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise refuse_control(self.dataplane, "unload", request.model_name)

    @grpc_guarded
    async def LogSettings(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        changes = grpc_changes(request)  # none: a read
        if not changes:
            return grpc_response(log_settings())
        return grpc_response(await asyncio.to_thread(update_log_settings, changes))

    @grpc_guarded
    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        dataplane = self.dataplane
        wanted = [o.name for o in request.outputs] or None
        counts = grpc_class_counts(request.outputs)
        version = parse_version(request.model_version)
        timeout = grpc_timeout_s(request)
        deadline = earliest(deadline_of(context), deadline_after(timeout))
        with (
            dataplane.in_flight(PROTOCOL),
            dataplane.admitted(PROTOCOL, request.model_name, version) as ticket,
        ):
            result = await dataplane.infer(
                InferenceRequest(
                    request.model_name,
                    decode_grpc_inputs(request, dataplane.limits),
                    PROTOCOL,
                    version=version,
                    outputs=wanted,
                    typed=True,
                    deadline=deadline,
                    ticket=ticket,
                    request_id=call_context.adopt(request.id or None, "the request's id"),
                )
            )
        response = service_pb2.ModelInferResponse(
            model_name=result.model, model_version=str(result.version), id=result.request_id
        )
        fill_grpc_outputs(response, answer_outputs(dataplane, result, counts))
        return response


def register(server: grpc.aio.Server, dataplane: DataPlane) -> None:
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(dataplane), server)
