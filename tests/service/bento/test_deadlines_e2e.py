"""Client deadlines, clients that leave and the in-flight cap, on a real server and every protocol.

Model ``slow`` waits 2.5 s for company before a batch runs (``max_wait_ms``), so a request sent to it
after a first one sits in a queue long enough to watch what happens to it. The batch that finally
runs must hold only the rows of requests still wanted: the others were dropped unrun.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.server import Server
from tests.service.modelfactory import write_scale_version
from tests.service.protocols.test_grpc_protocols_e2e import predict_request

pytestmark = pytest.mark.e2e
WAIT_S = 2.5
X = np.ones((1, 4), np.float32)
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("deadlines") / "repo"
    write_scale_version(repo, "slow", 1, 1.0)
    (repo / "serving.yaml").write_text(
        f"models:\n  slow: {{max_wait_ms: {WAIT_S * 1000:.0f}, max_batch_size: 64}}\n"
    )
    with Server(repo, repo.parent / "server.log", SERVING_MAX_INFLIGHT="6") as running:
        yield running


def rows_run(server: Server) -> float:
    return server.metric("serving_batch_size_sum", model="slow")


def ahead(server: Server) -> threading.Thread:
    """A request without deadline that opens the queue (it waits WAIT_S for company, then runs)."""
    thread = threading.Thread(
        target=lambda: requests.post(f"{server.url}/v2/models/slow/infer", json=V2_BODY, timeout=30)
    )
    thread.start()
    time.sleep(0.2)
    return thread


def timed(call: object) -> tuple[float, object]:
    started = time.perf_counter()
    try:
        result = call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        result = exc
    return time.perf_counter() - started, result


def test_a_50_ms_timeout_behind_a_long_queue_fails_in_time_on_every_protocol_and_never_runs(
    server: Server,
) -> None:
    before_rows, before_drops = rows_run(server), server.metric("serving_dropped_total", reason="deadline")
    first = ahead(server)
    header = {"X-Request-Timeout-Ms": "50"}
    native = {"model": "slow", "inputs": X.tolist()}
    with_parameter = {**V2_BODY, "parameters": {"timeout": 50_000}}  # microseconds, as Triton reads it
    tf_stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.tf_grpc))
    v2_stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.v2_grpc))
    v2_request = service_pb2.ModelInferRequest(model_name="slow")
    v2_request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    v2_request.raw_input_contents.append(X.tobytes())
    v2_with_parameter = service_pb2.ModelInferRequest()
    v2_with_parameter.CopyFrom(v2_request)
    v2_with_parameter.parameters["timeout"].int64_param = 50_000
    calls = {
        "native": lambda: requests.post(f"{server.url}/v1/predict", json=native, headers=header, timeout=10),
        "tfserving_rest": lambda: requests.post(
            f"{server.url}/v1/models/slow:predict", json={"instances": X.tolist()}, headers=header, timeout=10
        ),
        "v2_rest": lambda: requests.post(
            f"{server.url}/v2/models/slow/infer", json=V2_BODY, headers=header, timeout=10
        ),
        "v2_rest_parameter": lambda: requests.post(
            f"{server.url}/v2/models/slow/infer", json=with_parameter, timeout=10
        ),
        "tfserving_grpc": lambda: tf_stub.Predict(predict_request("slow", X), timeout=0.05),
        "v2_grpc": lambda: v2_stub.ModelInfer(v2_request, timeout=0.05),
        "v2_grpc_parameter": lambda: v2_stub.ModelInfer(v2_with_parameter, timeout=10),
    }
    for name, call in calls.items():
        elapsed, result = timed(call)
        if isinstance(result, grpc.RpcError):
            assert result.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (name, result)
        else:
            assert result.status_code == 504, (name, result.status_code, result.text)  # type: ignore[attr-defined]
            assert "deadline" in result.json()["error"], result.text  # type: ignore[attr-defined]
        assert 0.045 <= elapsed < 0.3, (name, elapsed)
    first.join()
    deadline = time.monotonic() + 5
    while server.metric("serving_dropped_total", reason="deadline") - before_drops < len(calls):
        assert time.monotonic() < deadline, (
            f"dropped: {server.metric('serving_dropped_total')}\n{server.log()}"
        )
        time.sleep(0.1)
    assert rows_run(server) - before_rows == 1, "a request past its deadline reached the runtime"
    assert server.metric("serving_requests_total", model="slow", code="504", outcome="timeout") >= 5


def test_a_client_that_leaves_while_queued_is_dropped_unrun(server: Server) -> None:
    before_rows, before = rows_run(server), server.metric("serving_dropped_total", reason="cancelled")
    first = ahead(server)
    body = json.dumps(V2_BODY).encode()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(0.3)  # queued behind the first request; then the client goes away
    first.join()
    deadline = time.monotonic() + 5
    while server.metric("serving_dropped_total", reason="cancelled") - before < 1:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    assert rows_run(server) - before_rows == 1
    assert server.metric("serving_requests_total", model="slow", code="499", outcome="cancelled") >= 1


def read_answer(sock: socket.socket) -> str:
    """One whole HTTP answer (head and its Content-Length of body) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return (head + b"\r\n\r\n" + body).decode()


def test_at_the_in_flight_cap_a_request_is_refused_without_its_body_being_read(server: Server) -> None:
    waiting = [ahead(server) for _ in range(6)]  # the cap: 6 requests in flight, all queued
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.settimeout(2)
        started = time.perf_counter()
        sock.sendall(  # announces 5 MB and sends none of it: only a refusal that skips the body answers
            b"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n"
        )
        answer = read_answer(sock)
        elapsed = time.perf_counter() - started
    assert answer.startswith("HTTP/1.1 503"), answer
    assert "retry-after: 1" in answer.lower() and "6 requests in flight (limit 6)" in answer
    assert elapsed < 0.5
    v2_stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.v2_grpc))
    request = service_pb2.ModelInferRequest(model_name="slow")
    with pytest.raises(grpc.RpcError) as caught:
        v2_stub.ModelInfer(request, timeout=2)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "in flight" in caught.value.details()
    for thread in waiting:
        thread.join()
    assert server.metric("serving_rejected_total", reason="inflight") >= 2
    ok = requests.post(f"{server.url}/v2/models/slow/infer", json=V2_BODY, timeout=10)
    assert ok.status_code == 200  # the cap frees up again


def test_bad_timeouts_are_400_with_what_was_expected(server: Server) -> None:
    for headers, body in [
        ({"X-Request-Timeout-Ms": "soon"}, V2_BODY),
        ({"X-Request-Timeout-Ms": "-5"}, V2_BODY),
        ({}, {**V2_BODY, "parameters": {"timeout": "abc"}}),
        ({}, {**V2_BODY, "parameters": {"timeout": 0}}),
    ]:
        answer = requests.post(f"{server.url}/v2/models/slow/infer", json=body, headers=headers, timeout=10)
        assert answer.status_code == 400, answer.text
        assert "must be a positive number" in answer.json()["error"]
