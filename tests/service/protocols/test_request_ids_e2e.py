"""Request ids and versions on every protocol of a real server: the client's ``X-Request-Id`` (gRPC metadata
``x-request-id``, V2 ``id``) or a generated one comes back with the version that answered (``X-Model-Version``;
gRPC trailing metadata), errors included; a malformed id is a 400 (INVALID_ARGUMENT) saying what is allowed.

Demo repository: model ``m`` with versions 1 (×1) and 2 (×2, the default), labels ``stable`` → 1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from tritonclient.grpc import service_pb2, service_pb2_grpc

from service.protocols.tfserving.codec import array_to_tensor
from service.protocols.tfserving.protos import tfserving_protos
from tests.server import Server
from tests.service.modelfactory import write_demo_repo

pytestmark = pytest.mark.e2e
X = [[1.0, 2.0, 3.0, 4.0]]
V2_INPUT = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X[0]}
REST = {  # name -> (path for model m, body for model m, path for an unknown model)
    "native": ("/v1/predict", {"model": "m", "inputs": X}, "/v1/predict"),
    "tfserving_rest": ("/v1/models/m:predict", {"instances": X}, "/v1/models/nope:predict"),
    "v2_rest": ("/v2/models/m/infer", {"inputs": [V2_INPUT]}, "/v2/models/nope/infer"),
    "bentoml": ("/predict", {"model": "m", "inputs": X}, "/predict"),
}
GENERATED = re.compile(r"^[0-9a-f]{12}-[0-9a-f]+$")
MALFORMED = "x" * 129


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("request-ids")
    with Server(write_demo_repo(folder / "repo"), folder / "server.log") as srv:
        yield srv


def post(server: Server, path: str, body: dict[str, Any], request_id: str | None = None) -> requests.Response:
    headers = {} if request_id is None else {"X-Request-Id": request_id}
    return requests.post(server.url + path, json=body, headers=headers, timeout=10)


def unknown_body(name: str) -> dict[str, Any]:
    body = dict(REST[name][1])
    if "model" in body:
        body["model"] = "nope"
    return body


@pytest.mark.parametrize("name", list(REST))
def test_rest_answers_echo_the_clients_id_and_the_version(server: Server, name: str) -> None:
    path, body, _ = REST[name]
    answer = post(server, path, body, f"id-{name}")
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Request-Id"] == f"id-{name}" and answer.headers["X-Model-Version"] == "2"
    generated = [post(server, path, body).headers["X-Request-Id"] for _ in range(2)]
    assert all(GENERATED.match(g) for g in generated) and generated[0] != generated[1], generated


def test_the_version_header_is_the_version_that_answered(server: Server) -> None:
    assert post(server, "/v1/models/m/versions/1:predict", {"instances": X}).headers["X-Model-Version"] == "1"
    assert (
        post(server, "/v1/models/m/labels/stable:predict", {"instances": X}).headers["X-Model-Version"] == "1"
    )
    typed = post(server, "/predict", {"model": "m", "inputs": X, "label": "stable"}, "typed-label")
    assert typed.json()["version"] == 1 and typed.headers["X-Model-Version"] == "1"
    assert typed.headers["X-Request-Id"] == "typed-label"
    status = requests.get(server.url + "/v1/models/m", headers={"X-Request-Id": "get-1"}, timeout=10)
    assert status.status_code == 200 and status.headers["X-Request-Id"] == "get-1"


def test_v2_body_id_is_adopted_and_echoed(server: Server) -> None:
    answer = post(server, "/v2/models/m/infer", {"id": "body-7", "inputs": [V2_INPUT]}, "header-7")
    assert answer.status_code == 200
    assert answer.json()["id"] == "body-7" and answer.headers["X-Request-Id"] == "body-7"
    header_only = post(server, "/v2/models/m/infer", {"inputs": [V2_INPUT]}, "header-8")
    assert header_only.json()["id"] == "header-8" == header_only.headers["X-Request-Id"]
    neither = post(server, "/v2/models/m/infer", {"inputs": [V2_INPUT]})
    assert GENERATED.match(neither.json()["id"]) and neither.json()["id"] == neither.headers["X-Request-Id"]
    wrong = post(server, "/v2/models/m/infer", {"id": 5, "inputs": [V2_INPUT]}, "header-9")
    assert wrong.status_code == 400 and wrong.json()["error"] == "the request's id must be a string, got int"
    assert wrong.headers["X-Request-Id"] == "header-9"


@pytest.mark.parametrize("name", list(REST))
def test_a_404_still_echoes_the_id_and_no_version(server: Server, name: str) -> None:
    _, _, path = REST[name]
    answer = post(server, path, unknown_body(name), f"lost-{name}")
    assert answer.status_code == 404, answer.text
    assert "'nope' not found" in answer.json()["error"]
    assert answer.headers["X-Request-Id"] == f"lost-{name}" and "X-Model-Version" not in answer.headers


@pytest.mark.parametrize("name", list(REST))
def test_a_malformed_request_id_is_a_400_saying_what_is_allowed(server: Server, name: str) -> None:
    path, body, _ = REST[name]
    for bad in (MALFORMED, "two words"):
        answer = post(server, path, body, bad)
        assert answer.status_code == 400, (bad, answer.text)
        message = answer.json()["error"]
        assert message.startswith("X-Request-Id must be 1-128 visible ASCII characters without spaces; got ")
        assert f"({len(bad)} characters)" in message
        assert "X-Request-Id" not in answer.headers  # not echoed: it is not a usable id


def tf_predict(server: Server, name: str, metadata: tuple[tuple[str, str], ...]) -> tuple[Any, Any]:
    """(response or the RpcError, trailing metadata as a dict) of a TF Serving Predict."""
    pb = tfserving_protos()
    request = pb.predict_pb2.PredictRequest()
    request.model_spec.name = name
    array_to_tensor(np.asarray(X, np.float32), request.inputs["x"])
    with grpc.insecure_channel(server.tf_grpc) as channel:
        stub = pb.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response, call = stub.Predict.with_call(request, metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc, dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
    return response, dict(call.trailing_metadata())


def v2_infer(
    server: Server, name: str, metadata: tuple[tuple[str, str], ...], id: str = ""
) -> tuple[Any, Any]:
    """(response or the RpcError, trailing metadata as a dict) of a V2 ModelInfer."""
    contents = service_pb2.InferTensorContents(fp32_contents=X[0])
    tensor = service_pb2.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP32", shape=[1, 4], contents=contents
    )
    request = service_pb2.ModelInferRequest(model_name=name, id=id, inputs=[tensor])
    with grpc.insecure_channel(server.v2_grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            response, call = stub.ModelInfer.with_call(request, metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc, dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
    return response, dict(call.trailing_metadata())


@pytest.mark.parametrize("call", [tf_predict, v2_infer], ids=["tfserving_grpc", "v2_grpc"])
def test_grpc_trailing_metadata_echoes_id_and_version_errors_included(server: Server, call: Any) -> None:
    response, trailing = call(server, "m", (("x-request-id", "g-ok"),))
    assert not isinstance(response, grpc.RpcError), response
    assert trailing["x-request-id"] == "g-ok" and trailing["x-model-version"] == "2"
    _, generated = call(server, "m", ())
    assert GENERATED.match(generated["x-request-id"]), generated
    error, trailing = call(server, "nope", (("x-request-id", "g-lost"),))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "'nope' not found" in error.details()
    assert trailing["x-request-id"] == "g-lost" and "x-model-version" not in trailing
    error, trailing = call(server, "m", (("x-request-id", MALFORMED),))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("X-Request-Id must be 1-128 visible ASCII characters without spaces")
    assert "x-request-id" not in trailing


def test_v2_grpc_request_id_field_is_adopted(server: Server) -> None:
    response, trailing = v2_infer(server, "m", (("x-request-id", "meta-1"),), id="field-1")
    assert response.id == "field-1" and trailing["x-request-id"] == "field-1"
    response, trailing = v2_infer(server, "m", (("x-request-id", "meta-2"),))
    assert response.id == "meta-2" == trailing["x-request-id"]
