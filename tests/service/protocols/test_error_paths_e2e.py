"""The error paths every protocol shares, against one real server: the body limit (413 / RESOURCE_EXHAUSTED),
client deadlines (DEADLINE_EXCEEDED), runtime failures (500 / INTERNAL without internals) and overload
(503 / UNAVAILABLE, always with ``Retry-After``), each followed by a normal request that must still work.

gRPC is called through raw channels with the generated stubs (TF Serving's from ``tensorflow-serving-api``,
V2's from ``tritonclient.grpc``) so that status codes, details and initial metadata are all visible.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from tritonclient.grpc import service_pb2, service_pb2_grpc

from service.protocols.tfserving.protos import tfserving_protos
from tests.server import Server
from tests.service.modelfactory import write_scale_version

pytestmark = pytest.mark.e2e

LIMIT = 64 * 1024  # SERVING_MAX_BODY_BYTES of the module's server
INTERNAL = "internal error; see the server log"
ONE = np.ones((1, 4), np.float32)
BIG = np.ones((8192, 4), np.float32)  # 128 KiB of tensor data: twice the limit
SLOW_WAIT_MS = 1500


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("repo")
    write_scale_version(repo, "m", 1, 1.0)
    write_scale_version(repo, "slow", 1, 1.0)
    write_scale_version(repo, "loose", 1, 1.0, declared_width=-1)  # width 5 reaches the runtime, which fails
    write_scale_version(repo, "tiny", 1, 1.0)
    (write_scale_version(repo, "corrupt", 1, 1.0) / "model.onnx").write_bytes(b"not an ONNX graph")
    (repo / "serving.yaml").write_text(
        "models:\n"
        f"  slow: {{max_wait_ms: {SLOW_WAIT_MS}, max_batch_size: 8}}\n"  # a lone request waits for company
        "  tiny: {max_wait_ms: 50, max_queue_rows: 1}\n"  # a second queued request is rejected (503)
    )
    log = tmp_path_factory.mktemp("logs") / "server.log"
    limits = {"SERVING_MAX_BODY_BYTES": str(LIMIT), "SERVING_GRPC_MAX_RECEIVE_BYTES": str(LIMIT)}
    with Server(repo, log, workers=1, **limits) as srv:
        yield srv


@pytest.fixture(scope="module")
def tf_channel(server: Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.tf_grpc) as channel:
        yield channel


@pytest.fixture(scope="module")
def v2_channel(server: Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.v2_grpc) as channel:
        yield channel


# ----- clients -------------------------------------------------------------------------------------------
def tf_request(model: str, x: np.ndarray) -> Any:
    pb = tfserving_protos()
    request = pb.predict_pb2.PredictRequest()
    request.model_spec.name = model
    tensor = request.inputs["x"]
    tensor.dtype = pb.types_pb2.DT_FLOAT
    for d in x.shape:
        tensor.tensor_shape.dim.add().size = d
    tensor.tensor_content = x.astype("<f4").tobytes()
    return request


def tf_output(response: Any) -> np.ndarray:
    tensor = response.outputs["y"]
    return np.frombuffer(tensor.tensor_content, "<f4").reshape([d.size for d in tensor.tensor_shape.dim])


def v2_request(model: str, x: np.ndarray) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.astype("<f4").tobytes())
    return request


def v2_output(response: service_pb2.ModelInferResponse) -> np.ndarray:
    return np.frombuffer(response.raw_output_contents[0], "<f4").reshape(list(response.outputs[0].shape))


Call = Callable[[str, np.ndarray, float], Any]


def tf_call(channel: grpc.Channel) -> Call:
    stub = tfserving_protos().prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return lambda model, x, timeout: stub.Predict(tf_request(model, x), timeout=timeout)


def v2_call(channel: grpc.Channel) -> Call:
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    return lambda model, x, timeout: stub.ModelInfer(v2_request(model, x), timeout=timeout)


def grpc_calls(tf_channel: grpc.Channel, v2_channel: grpc.Channel) -> dict[str, tuple[Call, Callable]]:
    return {"tf": (tf_call(tf_channel), tf_output), "v2": (v2_call(v2_channel), v2_output)}


def grpc_future(channel: grpc.Channel, kind: str, model: str, x: np.ndarray) -> grpc.Future:
    if kind == "tf":
        stub = tfserving_protos().prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict.future(tf_request(model, x), timeout=10)
    return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer.future(
        v2_request(model, x), timeout=10
    )


def assert_still_serving(call: Call, output: Callable, x: np.ndarray = ONE) -> None:
    np.testing.assert_array_equal(output(call("m", x, 10)), x)


def v2_json(rows: list[list[float]]) -> dict[str, Any]:
    x = np.array(rows, np.float32)
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}


def rest_posts(server: Server) -> dict[str, Callable[[str, list], requests.Response]]:
    """Per REST protocol: post(model, rows) with that protocol's JSON body."""
    u = server.url
    return {
        "native": lambda m, rows: requests.post(
            u + "/v1/predict", json={"model": m, "inputs": rows}, timeout=10
        ),
        "tfserving_rest": lambda m, rows: requests.post(
            f"{u}/v1/models/{m}:predict", json={"instances": rows}, timeout=10
        ),
        "v2_rest": lambda m, rows: requests.post(f"{u}/v2/models/{m}/infer", json=v2_json(rows), timeout=10),
    }


def assert_retry_after(value: str | None) -> None:
    assert value is not None, "no Retry-After"
    assert value.isdigit() and int(value) > 0, f"Retry-After {value!r} is not a positive integer"


# ----- body limit ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["tf", "v2"])
def test_grpc_message_over_the_limit_is_resource_exhausted(
    tf_channel: grpc.Channel, v2_channel: grpc.Channel, kind: str
) -> None:
    call, output = grpc_calls(tf_channel, v2_channel)[kind]
    with pytest.raises(grpc.RpcError) as err:
        call("m", BIG, 10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value
    assert_still_serving(call, output)
    half = np.ones((1024, 4), np.float32)  # 16 KiB: under the limit
    assert_still_serving(call, output, half)


@pytest.mark.parametrize("protocol", ["native", "tfserving_rest", "v2_rest"])
def test_http_body_over_the_limit_is_413(server: Server, protocol: str) -> None:
    post = rest_posts(server)[protocol]
    rows = BIG.tolist()
    r = post("m", rows)
    assert r.status_code == 413, r.text
    # TF Serving's error shape is {"error": ...} alone; the others add the limit as a detail
    assert r.json().get("limit") == (None if protocol == "tfserving_rest" else LIMIT), r.json()
    assert f"the limit is {LIMIT} bytes" in r.json()["error"]
    r = post("m", ONE.tolist())
    assert r.status_code == 200, r.text


def test_chunked_body_over_the_limit_is_413(server: Server) -> None:
    """No Content-Length: the limit is enforced while the body streams in."""
    body = b'{"model": "m", "inputs": [' + b",".join([b"[1, 1, 1, 1]"] * 8000) + b"]}"
    assert len(body) > LIMIT
    chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))
    r = requests.post(server.url + "/v1/predict", data=chunks, timeout=10)
    assert r.status_code == 413 and f"exceeds the limit of {LIMIT} bytes" in r.json()["error"], r.text


# ----- deadlines -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["tf", "v2"])
def test_grpc_client_deadline_shorter_than_the_wait_is_deadline_exceeded(
    tf_channel: grpc.Channel, v2_channel: grpc.Channel, kind: str
) -> None:
    call, output = grpc_calls(tf_channel, v2_channel)[kind]
    with pytest.raises(grpc.RpcError) as err:
        call("slow", ONE, 0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err.value
    assert_still_serving(call, output)
    np.testing.assert_array_equal(
        output(call("slow", ONE, 10)), ONE
    )  # the slow model answers when waited for


# ----- runtime failures ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["tf", "v2"])
def test_grpc_runtime_failure_is_internal_without_internals(
    tf_channel: grpc.Channel, v2_channel: grpc.Channel, kind: str
) -> None:
    call, output = grpc_calls(tf_channel, v2_channel)[kind]
    with pytest.raises(grpc.RpcError) as err:
        call("loose", np.ones((1, 5), np.float32), 10)
    assert err.value.code() == grpc.StatusCode.INTERNAL, err.value
    assert err.value.details() == INTERNAL
    np.testing.assert_array_equal(output(call("loose", ONE, 10)), ONE)  # the right width still runs
    assert_still_serving(call, output)


@pytest.mark.parametrize("protocol", ["native", "tfserving_rest", "v2_rest"])
def test_http_runtime_failure_is_500_without_internals(server: Server, protocol: str) -> None:
    post = rest_posts(server)[protocol]
    r = post("loose", [[1.0] * 5])
    assert r.status_code == 500 and r.json() == {"error": INTERNAL}, r.text
    assert "Traceback" not in r.text and "onnxruntime" not in r.text.lower()
    assert post("loose", ONE.tolist()).status_code == 200


def test_runtime_failure_is_in_the_server_log(server: Server) -> None:
    """What the client is not told, the operator is: the log has the runtime's own error."""
    requests.post(server.url + "/v1/predict", json={"model": "loose", "inputs": [[1.0] * 5]}, timeout=10)
    assert "inference failed for model loose" in server.log_path.read_text(errors="replace")


# ----- overload: 503 / UNAVAILABLE with Retry-After ------------------------------------------------------
@pytest.mark.parametrize("protocol", ["native", "tfserving_rest", "v2_rest"])
def test_every_http_overload_503_has_retry_after(server: Server, protocol: str) -> None:
    post = rest_posts(server)[protocol]
    rejected: list[requests.Response] = []
    for _ in range(5):  # bursts at the model whose queue holds one row, until some are rejected
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda _: post("tiny", ONE.tolist()), range(36)))
        assert {r.status_code for r in answers} <= {200, 503}, [r.text for r in answers]
        rejected += [r for r in answers if r.status_code == 503]
        if rejected:
            break
    assert rejected, "no request was rejected"
    for r in rejected:
        assert_retry_after(r.headers.get("Retry-After"))
        assert "queue full" in r.json()["error"]


@pytest.mark.parametrize("kind", ["tf", "v2"])
def test_every_grpc_overload_unavailable_has_retry_after_metadata(
    tf_channel: grpc.Channel, v2_channel: grpc.Channel, kind: str
) -> None:
    channel = tf_channel if kind == "tf" else v2_channel
    rejected: list[grpc.RpcError] = []
    for _ in range(5):
        futures = [grpc_future(channel, kind, "tiny", ONE) for _ in range(24)]
        errors = [f.exception() for f in futures]
        codes = {e.code() for e in errors if e is not None}
        assert codes <= {grpc.StatusCode.UNAVAILABLE}, [e.details() for e in errors if e is not None]
        rejected += [e for e in errors if e is not None]
        if rejected:
            break
    assert rejected, "no call was rejected"
    for e in rejected:
        assert "queue full" in e.details()
        assert_retry_after(dict(e.initial_metadata()).get("retry-after"))
    call, output = grpc_calls(tf_channel, v2_channel)[kind]
    assert_still_serving(call, output)


@pytest.mark.parametrize("kind", ["tf", "v2"])
def test_grpc_model_not_ready_is_unavailable_with_retry_after(
    tf_channel: grpc.Channel, v2_channel: grpc.Channel, kind: str
) -> None:
    channel = tf_channel if kind == "tf" else v2_channel
    error = grpc_future(channel, kind, "corrupt", ONE).exception()
    assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert "no ready version" in error.details()
    assert_retry_after(dict(error.initial_metadata()).get("retry-after"))


@pytest.mark.parametrize("protocol", ["native", "tfserving_rest", "v2_rest"])
def test_http_model_not_ready_503_has_retry_after(server: Server, protocol: str) -> None:
    r = rest_posts(server)[protocol]("corrupt", ONE.tolist())
    assert r.status_code == 503 and "no ready version" in r.json()["error"], r.text
    assert_retry_after(r.headers.get("Retry-After"))


def test_readyz_of_a_model_without_a_ready_version_is_503_with_retry_after(server: Server) -> None:
    r = requests.get(server.url + "/readyz/corrupt", timeout=5)
    assert r.status_code == 503, r.text
    assert_retry_after(r.headers.get("Retry-After"))
    assert r.json()["ready"] is False and "failed" in r.json()["reason"]
    ok = requests.get(server.url + "/readyz/m", timeout=5)
    assert ok.status_code == 200 and ok.json()["ready"] is True and "Retry-After" not in ok.headers
