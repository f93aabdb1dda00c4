"""KServe V2 / Open Inference Protocol over gRPC (``inference.GRPCInferenceService``), with the
service definition that ships in ``tritonclient``."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from service import __version__
from service.codecs import parse_version
from service.codecs_v2 import array_from_bytes, array_from_values, check_header, v2_datatype
from service.dataplane import DataPlane, InferenceRequest
from service.errors import InvalidInput
from service.lifecycle import State
from service.protocols.grpc_errors import grpc_guarded
from service.protocols.v2_rest import EXTENSIONS, SERVER_NAME, model_metadata

PROTOCOL = "v2_grpc"
_CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}  # fmt: skip


def decode_inputs(request: Any) -> dict[str | None, np.ndarray]:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    arrays: dict[str | None, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        shape = list(tensor.shape)
        check_header(tensor.name, shape, tensor.datatype)
        if raw:
            arrays[tensor.name] = array_from_bytes(tensor.name, raw[i], tensor.datatype, shape)
            continue
        field = _CONTENTS.get(tensor.datatype)
        if field is None:
            raise InvalidInput(f"input {tensor.name!r}: {tensor.datatype} needs raw_input_contents")
        values = np.asarray(getattr(tensor.contents, field))
        arrays[tensor.name] = array_from_values(tensor.name, values, tensor.datatype, shape)
    return arrays


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    """ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerReadyResponse(ready=self.dataplane.ready())

    @grpc_guarded
    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        sv = self.dataplane.find(request.name, parse_version(request.version))
        return service_pb2.ModelReadyResponse(ready=sv.state is State.READY)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerMetadataResponse(
            name=SERVER_NAME, version=__version__, extensions=EXTENSIONS
        )

    @grpc_guarded
    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        sv = self.dataplane.find(request.name, parse_version(request.version))
        versions = [v.version for v in self.dataplane.versions(request.name) if v.state is not State.UNLOADED]
        doc = model_metadata(sv, versions)
        response = service_pb2.ModelMetadataResponse(
            name=doc["name"], versions=doc["versions"], platform=doc["platform"]
        )
        for key in ("inputs", "outputs"):
            for t in doc[key]:
                getattr(response, key).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return response

    @grpc_guarded
    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        wanted = [o.name for o in request.outputs] or None
        result = await self.dataplane.infer(
            InferenceRequest(
                request.model_name,
                decode_inputs(request),
                PROTOCOL,
                version=parse_version(request.model_version),
                outputs=wanted,
            )
        )
        response = service_pb2.ModelInferResponse(
            model_name=result.model, model_version=str(result.version), id=request.id
        )
        for name, array in result.outputs.items():
            response.outputs.add(name=name, datatype=v2_datatype(array.dtype), shape=list(array.shape))
            response.raw_output_contents.append(
                np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
            )
        return response


def register(server: grpc.aio.Server, dataplane: DataPlane) -> None:
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(dataplane), server)
