"""TF Serving gRPC (``tensorflow-serving-api`` stubs) and KServe V2 gRPC (``tritonclient.grpc``) against a
real server, called exactly as their users call them."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tritonclient.grpc as grpcclient
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tritonclient.utils import InferenceServerException

from tests.server import Server
from tests.service.modelfactory import write_demo_repo

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("repo")
    write_demo_repo(repo)
    with Server(repo, tmp_path_factory.mktemp("logs") / "server.log", workers=2) as srv:
        yield srv


@pytest.fixture(scope="module")
def channel(server: Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.tf_grpc) as ch:
        yield ch


def predict_request(
    name: str, x: np.ndarray, version: int | None = None, label: str | None = None
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    return request


def test_tfserving_predict_by_default_version_and_label(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    x = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32)
    response = stub.Predict(predict_request("m", x), timeout=10)
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), x * 2)
    assert response.model_spec.version.value == 2
    response = stub.Predict(predict_request("m", x, version=1), timeout=10)
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), x)
    response = stub.Predict(predict_request("m", x, label="stable"), timeout=10)
    assert response.model_spec.version.value == 1
    with pytest.raises(grpc.RpcError) as err:  # the dtype rule: DT_DOUBLE to a DT_FLOAT model
        stub.Predict(predict_request("m", x.astype(np.float64)), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "expected float32" in err.value.details()
    # typed value fields instead of tensor_content
    request = predict_request("m", x)
    request.inputs["x"].ClearField("tensor_content")
    request.inputs["x"].float_val.extend(x.ravel().tolist())
    np.testing.assert_array_equal(tf.make_ndarray(stub.Predict(request, timeout=10).outputs["y"]), x * 2)


@pytest.mark.parametrize(
    ("request_kw", "code", "fragment"),
    [
        (
            {"name": "m", "x": np.ones((1, 3), np.float32)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "expected shape [-1, 4]",
        ),
        ({"name": "m", "x": np.array([[b"a"] * 4])}, grpc.StatusCode.INVALID_ARGUMENT, "not a numeric type"),
        ({"name": "zz", "x": np.ones((1, 4), np.float32)}, grpc.StatusCode.NOT_FOUND, "model 'zz' not found"),
        (
            {"name": "m", "x": np.ones((1, 4), np.float32), "version": 5},
            grpc.StatusCode.NOT_FOUND,
            "version 5",
        ),
        (
            {"name": "broken", "x": np.ones((1, 4), np.float32)},
            grpc.StatusCode.UNAVAILABLE,
            "no ready version",
        ),
    ],
)
def test_tfserving_predict_errors(
    channel: grpc.Channel, request_kw: dict, code: grpc.StatusCode, fragment: str
) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(predict_request(**request_kw), timeout=10)
    assert err.value.code() == code and fragment in err.value.details()
    assert stub.Predict(predict_request("m", np.ones((1, 4), np.float32)), timeout=10).outputs[
        "y"
    ]  # still serving


def test_tfserving_metadata_and_status(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "m"
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=10)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    sig = sig_map.signature_def["serving_default"]
    assert sig.inputs["x"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in sig.inputs["x"].tensor_shape.dim] == [-1, 4]
    assert response.model_spec.version.value == 2

    status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "m"
    status = status_stub.GetModelStatus(status_request, timeout=10)
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [(s.version, s.state) for s in status.model_version_status] == [(1, available), (2, available)]
    status_request.model_spec.name = "broken"
    failed = status_stub.GetModelStatus(status_request, timeout=10).model_version_status[0]
    assert (
        failed.state == get_model_status_pb2.ModelVersionStatus.END
        and "artifact corrupt" in failed.status.error_message
    )
    status_request.model_spec.name = "zz"
    with pytest.raises(grpc.RpcError) as err:
        status_stub.GetModelStatus(status_request, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_v2_grpc_with_tritonclient(server: Server) -> None:
    client = grpcclient.InferenceServerClient(server.v2_grpc)
    assert client.is_server_live() and client.is_server_ready()
    assert (
        client.is_model_ready("m") and client.is_model_ready("m", "1") and not client.is_model_ready("broken")
    )
    meta = client.get_model_metadata("m", as_json=True)
    assert meta["platform"] == "onnx_onnxv1" and meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert "binary_tensor_data" in client.get_server_metadata(as_json=True)["extensions"]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    inp = grpcclient.InferInput("x", [2, 4], "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("m", [inp], outputs=[grpcclient.InferRequestedOutput("y")], request_id="r1")
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2)
    assert result.get_response().id == "r1" and result.get_response().model_version == "2"
    for datatype, dtype in (("UINT8", np.uint8), ("INT16", np.int16)):  # integers that convert exactly
        inp = grpcclient.InferInput("x", [1, 4], datatype)
        inp.set_data_from_numpy(np.array([[1, 0, 1, 1]]).astype(dtype))
        np.testing.assert_array_equal(
            client.infer("m", [inp], model_version="1").as_numpy("y"), [[1, 0, 1, 1]]
        )
    for datatype, dtype in (("INT64", np.int64), ("FP16", np.float16), ("BOOL", np.bool_)):  # the dtype rule
        inp = grpcclient.InferInput("x", [1, 4], datatype)
        inp.set_data_from_numpy(np.array([[1, 0, 1, 1]]).astype(dtype))
        with pytest.raises(InferenceServerException, match="expected float32, got") as err:
            client.infer("m", [inp], model_version="1")
        assert err.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_v2_grpc_errors(server: Server) -> None:
    client = grpcclient.InferenceServerClient(server.v2_grpc)
    bad = grpcclient.InferInput("x", [1, 3], "FP32")
    bad.set_data_from_numpy(np.ones((1, 3), np.float32))
    with pytest.raises(InferenceServerException, match=r"expected shape \[-1, 4\]") as err:
        client.infer("m", [bad])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    good = grpcclient.InferInput("x", [1, 4], "FP32")
    good.set_data_from_numpy(np.ones((1, 4), np.float32))
    with pytest.raises(InferenceServerException, match="model 'zz' not found") as err:
        client.infer("zz", [good])
    assert err.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="no ready version") as err:
        client.infer("broken", [good])
    assert err.value.status() == "StatusCode.UNAVAILABLE"
    np.testing.assert_array_equal(client.infer("m", [good]).as_numpy("y"), [[2, 2, 2, 2]])
