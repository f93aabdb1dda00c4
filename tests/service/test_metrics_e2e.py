"""The ``serving_*`` metrics after a known mixed load over all five protocols, against a real server with two
workers: counts equal what was sent, every label stays within its documented values, in-flight gauges return
to zero.

The load: successes, wrong shapes (400), unknown models (404), runtime failures (500), a model without a ready
version (503) and overload bursts (503 with a rejection), each through native REST, TF Serving REST and gRPC,
and KServe V2 REST and gRPC, from several threads. Every request is counted client-side by
(model label, protocol, code); /metrics must agree exactly.
"""

from __future__ import annotations

import concurrent.futures
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2, service_pb2_grpc

from service.models.version import State
from service.protocols.tfserving.protos import tfserving_protos
from tests.server import Server
from tests.service.modelfactory import write_scale_version

pytestmark = pytest.mark.e2e

PROTOCOLS = ("native", "tfserving_rest", "tfserving_grpc", "v2_rest", "v2_grpc")
OUTCOMES = {"success", "client_error", "server_error"}
MODELS = {"m", "other", "loose", "tiny", "corrupt"}
UNKNOWN = "__unknown__"
GRPC_TO_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# per protocol: (model, rows, how many); wrong widths give 400 for m and 500 for loose (declared width -1)
MIX = [
    ("m", [[1.0, 2.0, 3.0, 4.0]], 20),
    ("m", [[1.0, 2.0, 3.0, 4.0]] * 3, 5),
    ("other", [[1.0, 1.0, 1.0, 1.0]], 10),
    ("m", [[1.0, 2.0, 3.0]], 10),
    ("nope", [[1.0, 2.0, 3.0, 4.0]], 10),
    ("loose", [[1.0] * 5], 4),
    ("loose", [[1.0] * 4], 4),
    ("corrupt", [[1.0] * 4], 3),
]


def outcome_of(code: int) -> str:
    return "success" if code < 400 else "client_error" if code < 500 else "server_error"


# ----- one client per protocol: send(model, rows) -> HTTP-equivalent status code ---------------------------
class Clients:
    """Sends one request by any protocol; a gRPC channel per thread and a new HTTP connection per request,
    so the kernel spreads the load over both workers."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._local = threading.local()
        self._channels: list[grpc.Channel] = []
        self._lock = threading.Lock()
        self.pb = tfserving_protos()

    def _stubs(self) -> tuple[Any, Any]:
        if not hasattr(self._local, "stubs"):
            tf, v2 = grpc.insecure_channel(self.server.tf_grpc), grpc.insecure_channel(self.server.v2_grpc)
            with self._lock:
                self._channels += [tf, v2]
            self._local.stubs = (
                self.pb.prediction_service_pb2_grpc.PredictionServiceStub(tf),
                service_pb2_grpc.GRPCInferenceServiceStub(v2),
            )
        return self._local.stubs

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def send(self, protocol: str, model: str, rows: list[list[float]]) -> int:
        x = np.array(rows, np.float32)
        u = self.server.url
        if protocol == "native":
            return requests.post(
                u + "/v1/predict", json={"model": model, "inputs": rows}, timeout=10
            ).status_code
        if protocol == "tfserving_rest":
            return requests.post(
                f"{u}/v1/models/{model}:predict", json={"instances": rows}, timeout=10
            ).status_code
        if protocol == "v2_rest":
            body = {
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
                ]
            }
            return requests.post(f"{u}/v2/models/{model}/infer", json=body, timeout=10).status_code
        tf_stub, v2_stub = self._stubs()
        try:
            if protocol == "tfserving_grpc":
                request = self.pb.predict_pb2.PredictRequest()
                request.model_spec.name = model
                tensor = request.inputs["x"]
                tensor.dtype = self.pb.types_pb2.DT_FLOAT
                for d in x.shape:
                    tensor.tensor_shape.dim.add().size = d
                tensor.tensor_content = x.astype("<f4").tobytes()
                tf_stub.Predict(request, timeout=10)
            else:
                assert protocol == "v2_grpc", protocol
                request = service_pb2.ModelInferRequest(model_name=model)
                request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
                request.raw_input_contents.append(x.astype("<f4").tobytes())
                v2_stub.ModelInfer(request, timeout=10)
        except grpc.RpcError as e:
            return GRPC_TO_HTTP[e.code()]
        return 200


@dataclass
class Run:
    server: Server
    sent: Counter[tuple[str, str, int]]  # (model label, protocol, code) -> requests
    overloaded: Counter[str]  # protocol -> overload 503s (model tiny)
    families: dict[str, Any]  # metric family name -> family, after the load

    def samples(self, name: str) -> list[Any]:
        return [s for f in self.families.values() for s in f.samples if s.name == name]


def scrape(server: Server) -> dict[str, Any]:
    text = requests.get(server.url + "/metrics", timeout=10).text
    return {f.name: f for f in text_string_to_metric_families(text)}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    repo = tmp_path_factory.mktemp("repo")
    write_scale_version(repo, "m", 1, 1.0)
    write_scale_version(repo, "other", 1, 2.0)
    write_scale_version(repo, "loose", 1, 1.0, declared_width=-1)
    write_scale_version(repo, "tiny", 1, 1.0)
    (write_scale_version(repo, "corrupt", 1, 1.0) / "model.onnx").write_bytes(b"not an ONNX graph")
    (repo / "serving.yaml").write_text(
        "models:\n  m: {max_wait_ms: 5}\n  tiny: {max_wait_ms: 50, max_queue_rows: 1}\n"
    )
    with Server(repo, tmp_path_factory.mktemp("logs") / "server.log", workers=2) as server:
        clients = Clients(server)
        sent: Counter[tuple[str, str, int]] = Counter()
        overloaded: Counter[str] = Counter()
        lock = threading.Lock()

        def send(job: tuple[str, str, list[list[float]]]) -> int:
            protocol, model, rows = job
            code = clients.send(protocol, model, rows)
            with lock:
                sent[(model if model in MODELS else UNKNOWN, protocol, code)] += 1
                if model == "tiny" and code == 503:
                    overloaded[protocol] += 1
            return code

        try:
            jobs = [(p, model, rows) for p in PROTOCOLS for model, rows, n in MIX for _ in range(n)]
            random.Random(0).shuffle(jobs)
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(send, jobs))
            for protocol in PROTOCOLS:  # bursts at the one-row queue until each protocol saw a rejection
                for _ in range(5):
                    with concurrent.futures.ThreadPoolExecutor(12) as pool:
                        list(pool.map(send, [(protocol, "tiny", [[1.0] * 4])] * 24))
                    if overloaded[protocol]:
                        break
            yield Run(server, sent, overloaded, scrape(server))
        finally:
            clients.close()


# ----- the load itself went as planned (so the checks below are not vacuous) -------------------------------
def test_the_load_covered_every_protocol_and_outcome(run: Run) -> None:
    total = sum(run.sent.values())
    assert 300 <= total <= 1200, total
    for protocol in PROTOCOLS:
        codes = {code for (_, p, code), n in run.sent.items() if p == protocol and n}
        assert {200, 400, 404, 500, 503} <= codes, (protocol, codes)
        assert run.overloaded[protocol] > 0, protocol
        assert run.sent[("m", protocol, 200)] == 25 and run.sent[("m", protocol, 400)] == 10
        assert run.sent[(UNKNOWN, protocol, 404)] == 10 and run.sent[("loose", protocol, 500)] == 4
        assert run.sent[("corrupt", protocol, 503)] == 3


# ----- counts -------------------------------------------------------------------------------------------------
def test_request_counts_equal_what_was_sent(run: Run) -> None:
    counted: Counter[tuple[str, str, int]] = Counter()
    for s in run.samples("serving_requests_total"):
        counted[(s.labels["model"], s.labels["protocol"], int(s.labels["code"]))] += int(s.value)
    assert +counted == +run.sent


def test_request_counts_per_protocol_and_outcome(run: Run) -> None:
    counted: Counter[tuple[str, str]] = Counter()
    for s in run.samples("serving_requests_total"):
        assert s.labels["outcome"] == outcome_of(int(s.labels["code"])), s
        counted[(s.labels["protocol"], s.labels["outcome"])] += int(s.value)
    expected: Counter[tuple[str, str]] = Counter()
    for (_, protocol, code), n in run.sent.items():
        expected[(protocol, outcome_of(code))] += n
    assert +counted == +expected
    assert {p for p, _ in +counted} == set(PROTOCOLS)


def test_rejections_count_the_overloads_only(run: Run) -> None:
    rejected: Counter[tuple[str, str]] = Counter()
    for s in run.samples("serving_rejected_total"):
        rejected[(s.labels["model"], s.labels["protocol"])] += int(s.value)
    assert +rejected == Counter({("tiny", p): n for p, n in run.overloaded.items()})


def test_latency_histogram_counts_every_request(run: Run) -> None:
    counted: Counter[str] = Counter()
    for s in run.samples("serving_request_duration_seconds_count"):
        counted[s.labels["protocol"]] += int(s.value)
    expected: Counter[str] = Counter()
    for (_, protocol, _), n in run.sent.items():
        expected[protocol] += n
    assert +counted == +expected


def test_inflight_gauges_are_back_at_zero(run: Run) -> None:
    samples = run.samples("serving_inflight_requests")
    assert {s.labels["protocol"] for s in samples} == set(PROTOCOLS), "a protocol never reached the batcher"
    assert [s for s in samples if s.value != 0] == []


# ----- label values -----------------------------------------------------------------------------------------
def serving_samples(run: Run) -> list[Any]:
    return [s for name, f in run.families.items() if name.startswith("serving_") for s in f.samples]


def label_values(run: Run, label: str) -> set[str]:
    return {s.labels[label] for s in serving_samples(run) if label in s.labels}


def test_protocol_label_takes_only_the_five_names(run: Run) -> None:
    assert label_values(run, "protocol") == set(PROTOCOLS)


def test_outcome_label_takes_only_the_three_outcomes(run: Run) -> None:
    assert label_values(run, "outcome") == OUTCOMES


def test_code_label_takes_only_numeric_http_codes(run: Run) -> None:
    codes = label_values(run, "code")
    assert codes >= {"200", "400", "404", "500", "503"}
    assert all(c.isdigit() and 100 <= int(c) <= 599 for c in codes), codes


def test_model_label_takes_only_served_names_or_unknown(run: Run) -> None:
    models = label_values(run, "model")
    assert models <= MODELS | {UNKNOWN} and {UNKNOWN, "m", "tiny", "corrupt"} <= models, models


def test_model_state_labels_are_the_states_and_one_is_set(run: Run) -> None:
    samples = run.samples("serving_model_state")
    assert {s.labels["state"] for s in samples} == {s.value for s in State}
    current: dict[tuple[str, str], list[str]] = {}
    for s in samples:
        current.setdefault((s.labels["model"], s.labels["version"]), [])
        if s.value == 1:
            current[(s.labels["model"], s.labels["version"])].append(s.labels["state"])
    assert current == {(m, "1"): [State.FAILED if m == "corrupt" else State.READY] for m in MODELS}
