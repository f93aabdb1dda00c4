"""TensorFlow Serving's gRPC API: ``PredictionService`` (Predict, GetModelMetadata) and
``ModelService`` (GetModelStatus), built on the stubs of ``tensorflow-serving-api``."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format

from service.dataplane import DataPlane, InferenceRequest
from service.errors import InvalidInput
from service.protocols.grpc_errors import deadline_of, grpc_guarded
from service.protocols.tfserving.codec import array_to_tensor, decode_inputs
from service.protocols.tfserving.protos import tfserving_protos
from service.protocols.tfserving.spec import SIGNATURE, check_signature, model_status, signature_def_map

PROTOCOL = "tfserving_grpc"


def _spec(spec: Any) -> tuple[str, int | None, str | None]:
    check_signature(spec.signature_name)
    version = spec.version.value if spec.HasField("version") else None
    return spec.name, version, spec.version_label or None


def _servicers(dataplane: DataPlane) -> tuple[Any, Any]:
    pb = tfserving_protos()

    class PredictionService(pb.prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[name-defined]
        @grpc_guarded
        async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            name, version, label = _spec(request.model_spec)
            with dataplane.in_flight(PROTOCOL), dataplane.admitted(PROTOCOL, name, version, label) as ticket:
                inputs = decode_inputs(request.inputs, dataplane.limits)
                wanted = list(request.output_filter) or None
                result = await dataplane.infer(
                    InferenceRequest(
                        name,
                        inputs,
                        PROTOCOL,
                        version=version,
                        label=label,
                        outputs=wanted,
                        typed=True,
                        deadline=deadline_of(context),
                        ticket=ticket,
                    )
                )
            response = pb.predict_pb2.PredictResponse()
            response.model_spec.name = result.model
            response.model_spec.version.value = result.version
            response.model_spec.signature_name = SIGNATURE
            for key, value in result.outputs.items():
                array_to_tensor(value, response.outputs[key])
            return response

        @grpc_guarded
        async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            name, version, label = _spec(request.model_spec)
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise InvalidInput(f"metadata_field must be ['signature_def'], got {fields}")
            view = dataplane.find(name, version, label)
            response = pb.get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = view.name
            response.model_spec.version.value = view.version
            signatures = json_format.ParseDict(
                signature_def_map(view), pb.get_model_metadata_pb2.SignatureDefMap()
            )
            response.metadata["signature_def"].Pack(signatures)
            return response

    class ModelService(pb.model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[name-defined]
        @grpc_guarded
        async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            status = model_status(dataplane, *_spec(request.model_spec))
            return json_format.ParseDict(status, pb.get_model_status_pb2.GetModelStatusResponse())

    return PredictionService(), ModelService()


def register(server: grpc.aio.Server, dataplane: DataPlane) -> None:
    """Add both TF Serving services to ``server``."""
    pb = tfserving_protos()
    prediction, models = _servicers(dataplane)
    pb.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    pb.model_service_pb2_grpc.add_ModelServiceServicer_to_server(models, server)
