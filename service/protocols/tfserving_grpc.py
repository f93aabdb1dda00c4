"""TensorFlow Serving's gRPC API: ``PredictionService`` (Predict, GetModelMetadata) and
``ModelService`` (GetModelStatus), built on the stubs of ``tensorflow-serving-api``."""

from __future__ import annotations

from typing import Any

import grpc

from service.codecs_tfserving import TF_DTYPE_NAMES, array_to_tensor, tensor_to_array, tfserving_protos
from service.dataplane import DataPlane, InferenceRequest
from service.errors import InvalidInput
from service.protocols.grpc_errors import grpc_guarded
from service.versions import ServedVersion, State

PROTOCOL = "tfserving_grpc"
SIGNATURE = "serving_default"
# ModelVersionStatus.State values (tensorflow_serving/apis/get_model_status.proto)
_STATE = {State.LOADING: 20, State.READY: 30, State.FAILED: 50, State.UNLOADING: 40, State.UNLOADED: 50}


def _spec(spec: Any) -> tuple[str, int | None, str | None]:
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label or None
    if spec.signature_name not in ("", SIGNATURE):
        raise InvalidInput(f"signature {spec.signature_name!r} not found; this model has {SIGNATURE!r}")
    return spec.name, version, label


def _servicers(dataplane: DataPlane) -> tuple[Any, Any]:
    pb = tfserving_protos()

    class PredictionService(pb.prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[name-defined]
        @grpc_guarded
        async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            name, version, label = _spec(request.model_spec)
            inputs = {k: tensor_to_array(k, v) for k, v in request.inputs.items()}
            wanted = list(request.output_filter) or None
            result = await dataplane.infer(
                InferenceRequest(name, dict(inputs), PROTOCOL, version=version, label=label, outputs=wanted)
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
            sv = dataplane.find(name, version, label)
            response = pb.get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = sv.name
            response.model_spec.version.value = sv.version
            response.metadata["signature_def"].Pack(_signature_map(pb, sv))
            return response

    class ModelService(pb.model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[name-defined]
        @grpc_guarded
        async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            name, version, label = _spec(request.model_spec)
            if version is None and label is None:
                versions = dataplane.versions(name)
            else:
                versions = [dataplane.find(name, version, label)]
            response = pb.get_model_status_pb2.GetModelStatusResponse()
            for sv in versions:
                status = response.model_version_status.add()
                status.version = sv.version
                status.state = _STATE[sv.state]
                if sv.state is State.FAILED:
                    status.status.error_code = 2  # UNKNOWN
                status.status.error_message = sv.error or ""
            return response

    return PredictionService(), ModelService()


def _signature_map(pb: Any, sv: ServedVersion) -> Any:
    sig_map = pb.get_model_metadata_pb2.SignatureDefMap()
    sig = sig_map.signature_def[SIGNATURE]
    sig.method_name = "tensorflow/serving/predict"
    if sv.metadata is not None:
        for specs, target in ((sv.metadata.inputs, sig.inputs), (sv.metadata.outputs, sig.outputs)):
            for spec in specs:
                info = target[spec.name]
                info.name = spec.name
                info.dtype = TF_DTYPE_NAMES[spec.dtype]
                for d in spec.shape:
                    info.tensor_shape.dim.add().size = d
    return sig_map


def register(server: grpc.aio.Server, dataplane: DataPlane) -> None:
    """Add both TF Serving services to ``server``."""
    pb = tfserving_protos()
    prediction, models = _servicers(dataplane)
    pb.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    pb.model_service_pb2_grpc.add_ModelServiceServicer_to_server(models, server)
