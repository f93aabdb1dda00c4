"""Every request limit, the NaN rule and the dtype rule on every protocol, against one real server with
small limits: native JSON, TF Serving REST, KServe V2 REST (JSON and binary), TF Serving gRPC and V2 gRPC.
Sizes answer 413 / RESOURCE_EXHAUSTED, malformed requests 400 / INVALID_ARGUMENT; the server keeps serving."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import orjson
import pytest
import requests
from tritonclient.grpc import service_pb2, service_pb2_grpc

from service.protocols.tfserving.protos import tfserving_protos
from service.protocols.tfserving.spec import dtype_name
from service.protocols.v2.spec import datatype
from tests.server import Server
from tests.service.modelfactory import write_scale_version

pytestmark = pytest.mark.e2e

LIMITS = {
    "SERVING_MAX_BODY_BYTES": 64 * 1024, "SERVING_GRPC_MAX_RECEIVE_BYTES": 64 * 1024,
    "SERVING_GRPC_MAX_SEND_BYTES": 512, "SERVING_MAX_ROWS": 50, "SERVING_MAX_ELEMENTS": 400,
    "SERVING_MAX_JSON_DEPTH": 6, "SERVING_MAX_INPUTS": 2, "SERVING_MAX_NAME_LENGTH": 16,
}  # fmt: skip
PROTOCOLS = ["native", "tfserving_rest", "v2_json", "v2_binary", "tfserving_grpc", "v2_grpc"]
GRPC_STATUS = {"OK": 200, "INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 413}
Tensor = tuple[str, np.ndarray | list[Any], list[int] | None]  # name, values, declared shape (None: values')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("repo")
    write_scale_version(repo, "m", 1, 2.0)
    write_scale_version(repo, "huge", 1, 3e38)  # 2 * 3e38 overflows float32: an infinite output
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with Server(repo, log, workers=1, **{k: str(v) for k, v in LIMITS.items()}) as srv:
        yield srv


def _declared(values: np.ndarray | list[Any], shape: list[int] | None) -> list[int]:
    return shape if shape is not None else list(np.shape(values))


def _rest(server: Server, protocol: str, model: str, tensors: list[Tensor]) -> int:
    named = {n: np.asarray(v).tolist() for n, v, _ in tensors}
    if protocol == "native":
        url, body = server.url + "/v1/predict", {"model": model, "inputs": named}
    elif protocol == "tfserving_rest":
        url, body = f"{server.url}/v1/models/{model}:predict", {"inputs": named}
    else:
        url = f"{server.url}/v2/models/{model}/infer"
        items = [{"name": n, "shape": _declared(v, s), "datatype": datatype(np.asarray(v).dtype),
                  "data": np.asarray(v).reshape(-1).tolist()} for n, v, s in tensors]  # fmt: skip
        if protocol == "v2_binary":
            blobs = [
                np.asarray(v).astype(np.asarray(v).dtype.newbyteorder("<")).tobytes() for _, v, _ in tensors
            ]
            for item, blob in zip(items, blobs, strict=True):
                del item["data"]
                item["parameters"] = {"binary_data_size": len(blob)}
            header = orjson.dumps({"inputs": items})
            r = requests.post(url, data=header + b"".join(blobs), timeout=10,
                              headers={"Inference-Header-Content-Length": str(len(header))})  # fmt: skip
            return r.status_code
        body = {"inputs": items}
    data = json.dumps(body)  # Python's json writes NaN and Infinity tokens, which JSON does not have
    return requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=10).status_code


def _grpc(server: Server, protocol: str, model: str, tensors: list[Tensor]) -> int:
    try:
        if protocol == "tfserving_grpc":
            pb = tfserving_protos()
            request = pb.predict_pb2.PredictRequest()
            request.model_spec.name = model
            for name, values, shape in tensors:
                array = np.asarray(values)
                tensor = request.inputs[name]
                tensor.dtype = pb.types_pb2.DataType.Value(dtype_name(array.dtype))
                for d in _declared(array, shape):
                    tensor.tensor_shape.dim.add().size = d
                if shape is not None:
                    tensor.float_val.append(1.0)  # TF fills the declared shape from one value
                else:
                    tensor.tensor_content = array.astype(array.dtype.newbyteorder("<")).tobytes()
            with grpc.insecure_channel(server.tf_grpc) as channel:
                pb.prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
        else:
            v2_request = service_pb2.ModelInferRequest(model_name=model)
            for name, values, shape in tensors:
                array = np.asarray(values)
                v2_request.inputs.add(
                    name=name, datatype=datatype(array.dtype), shape=_declared(array, shape)
                )
                raw = b"" if shape is not None else array.astype(array.dtype.newbyteorder("<")).tobytes()
                v2_request.raw_input_contents.append(raw)
            with grpc.insecure_channel(server.v2_grpc) as channel:
                service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(v2_request, timeout=10)
    except grpc.RpcError as exc:
        return GRPC_STATUS.get(exc.code().name, 500)
    return 200


def call(server: Server, protocol: str, model: str, tensors: list[Tensor]) -> int:
    """The HTTP status (gRPC codes mapped to theirs) of one request on ``protocol``."""
    send = _grpc if protocol.endswith("grpc") else _rest
    return send(server, protocol, model, tensors)


def ones(*shape: int, dtype: Any = np.float32) -> np.ndarray:
    return np.ones(shape, dtype)


def nested(depth: int) -> list[Any]:
    value: list[Any] = [1.0, 1.0, 1.0, 1.0]
    for _ in range(depth - 1):
        value = [value]
    return value


def declared_huge(protocol: str) -> Tensor:
    """A tensor of 4 values (or none) declaring 10**9 elements; JSON without a shape sends 401 values."""
    if protocol in ("native", "tfserving_rest"):
        return ("x", ones(1, 401), None)
    return ("x", ones(1, 4), [1, 10**9])


CASES: dict[str, tuple[Callable[[str], tuple[str, list[Tensor]]], int]] = {
    "ok": (lambda p: ("m", [("x", ones(1, 4), None)]), 200),
    "rows over max_rows": (lambda p: ("m", [("x", ones(51, 4), None)]), 413),
    "elements over max_elements": (lambda p: ("m", [("x", ones(1, 401), None)]), 413),
    "declared shape over max_elements": (lambda p: ("m", [declared_huge(p)]), 413),
    "rank over max_json_depth": (lambda p: ("m", [("x", ones(*[1] * 7), None)]), 400),
    "inputs over max_inputs": (lambda p: ("m", [(n, ones(1, 4), None) for n in "abc"]), 413),
    "model name over max_name_length": (lambda p: ("m" * 17, [("x", ones(1, 4), None)]), 400),
    "input name over max_name_length": (lambda p: ("m", [("x" * 17, ones(1, 4), None)]), 400),
    "traversal model name": (lambda p: ("../m", [("x", ones(1, 4), None)]), 404),
    "float16 to a float32 model": (lambda p: ("m", [("x", ones(1, 4, dtype=np.float16), None)]), 400),
    "float64 to a float32 model": (lambda p: ("m", [("x", ones(1, 4, dtype=np.float64), None)]), 400),
    "int16 to a float32 model": (lambda p: ("m", [("x", ones(1, 4, dtype=np.int16), None)]), 200),
    "NaN": (lambda p: ("m", [("x", np.array([[1, np.nan, 1, 1]], np.float32), None)]), 400),
    "infinity": (lambda p: ("m", [("x", np.array([[1, np.inf, 1, 1]], np.float32), None)]), 400),
}
JSON_ONLY = {"float16 to a float32 model", "float64 to a float32 model", "int16 to a float32 model"}
"""JSON numbers carry no dtype: native and TF REST bodies are the same for every dtype (and are taken)."""
NOT_IN_JSON = {"NaN", "infinity"}  # standard JSON cannot write them (tested below as raw bodies)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_limit_and_rule_on_every_protocol(server: Server, protocol: str, case: str) -> None:
    build, expected = CASES[case]
    untyped = protocol in ("native", "tfserving_rest")
    if case in NOT_IN_JSON and protocol in ("native", "tfserving_rest", "v2_json"):
        expected = 400  # requests writes NaN/Infinity tokens, which are not JSON: malformed
    if case in JSON_ONLY and untyped:
        expected = 200
    model, tensors = build(protocol)
    assert call(server, protocol, model, tensors) == expected
    assert call(server, protocol, "m", [("x", ones(1, 4), None)]) == 200  # still serving


@pytest.mark.parametrize("protocol", ["native", "tfserving_rest", "v2_json"])
def test_json_numbers_beyond_float32_are_400(server: Server, protocol: str) -> None:
    assert call(server, protocol, "m", [("x", np.array([[1e39, 1.0, 1.0, 1.0]]), None)]) == 400


@pytest.mark.parametrize("protocol", ["native", "tfserving_rest", "v2_json"])
def test_json_nesting_over_max_json_depth_is_400(server: Server, protocol: str) -> None:
    data = nested(7)
    if protocol == "native":
        r = requests.post(server.url + "/v1/predict", json={"model": "m", "inputs": data}, timeout=10)
    elif protocol == "tfserving_rest":
        r = requests.post(server.url + "/v1/models/m:predict", json={"instances": data}, timeout=10)
    else:
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": data}]}
        r = requests.post(server.url + "/v2/models/m/infer", json=body, timeout=10)
    assert r.status_code == 400
    assert "nested deeper" in r.json()["error"] or "dimensions" in r.json()["error"]


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/models/m:predict", "/v2/models/m/infer"])
def test_chunked_body_over_the_limit_is_413_on_every_rest_protocol(server: Server, path: str) -> None:
    chunks = (b" " * 8192 for _ in range(10))  # 80 KiB, no Content-Length
    r = requests.post(server.url + path, data=chunks, timeout=10)
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]


@pytest.mark.parametrize("protocol", ["tfserving_grpc", "v2_grpc"])
def test_grpc_answers_over_max_send_bytes_are_resource_exhausted(server: Server, protocol: str) -> None:
    assert call(server, protocol, "m", [("x", ones(40, 4), None)]) == 413  # 640 bytes of output > 512
    assert call(server, protocol, "m", [("x", ones(1, 4), None)]) == 200


def test_non_finite_outputs_are_null_in_json_and_ieee_in_binary(server: Server) -> None:
    r = requests.post(
        server.url + "/v1/predict", json={"model": "huge", "inputs": [[2, 0, 1, -2]]}, timeout=10
    )
    assert r.status_code == 200 and r.json()["outputs"]["y"][0][:2] == [None, 0.0]
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [2, 0, 1, -2]}],
            "parameters": {"binary_data_output": True}}  # fmt: skip
    r = requests.post(server.url + "/v2/models/huge/infer", json=body, timeout=10)
    size = int(r.headers["Inference-Header-Content-Length"])
    y = np.frombuffer(r.content[size:], "<f4")
    assert np.isposinf(y[0]) and y[1] == 0 and np.isneginf(y[3])
