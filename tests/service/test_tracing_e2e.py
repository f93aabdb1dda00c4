"""``SERVING_TRACING=otlp`` really exports: a real server sends its spans over OTLP/HTTP to a small OTLP
receiver on loopback in this test, which decodes each protobuf ``ExportTraceServiceRequest``. Covers the
REST, BentoML ``/predict`` and gRPC ingresses with the clients' ``traceparent``."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from service.protocols.tfserving.codec import array_to_tensor
from service.protocols.tfserving.protos import tfserving_protos
from tests.server import Server
from tests.service.modelfactory import write_demo_repo

pytestmark = pytest.mark.e2e
X = [[1.0, 2.0, 3.0, 4.0]]


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP traces endpoint: keeps every decoded export request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.exports: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) of everything received so far."""
        with self.lock:
            exports = list(self.exports)
        found = []
        for export in exports:
            for resource_spans in export.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope.spans)
        return found


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        assert self.headers["Content-Type"] == "application/x-protobuf"
        export = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        with self.server.lock:
            self.server.exports.append(export)
            self.server.paths.append(self.path)
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("tracing-e2e")
    env = {"SERVING_TRACING": "otlp", "SERVING_TRACING_ENDPOINT": receiver.url,
           "SERVING_TRACING_SERVICE_NAME": "e2e-serving", "OTEL_BSP_SCHEDULE_DELAY": "100"}  # fmt: skip
    with Server(write_demo_repo(folder / "repo"), folder / "server.log", **env) as srv:
        yield srv


def traceparent(n: int) -> tuple[str, str, str]:
    """A sampled client span: (traceparent, trace id, span id)."""
    trace_id, span_id = f"{n:032x}", f"{n + 0xA0:016x}"
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def test_spans_of_every_ingress_reach_the_otlp_endpoint(server: Server, receiver: Receiver) -> None:
    sent: dict[str, tuple[str, str]] = {}  # protocol -> (trace id, client span id)
    header, trace_id, span_id = traceparent(0x11)
    answer = requests.post(server.url + "/v1/predict", json={"model": "m", "inputs": X},
                           headers={"traceparent": header}, timeout=10)  # fmt: skip
    assert answer.status_code == 200 and answer.headers["x-trace-id"] == trace_id
    sent["native"] = (trace_id, span_id)

    header, trace_id, span_id = traceparent(0x22)
    answer = requests.post(server.url + "/predict", json={"model": "m", "inputs": X},
                           headers={"traceparent": header, "X-Request-Id": "typed-1"}, timeout=10)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-trace-id"] == trace_id and answer.headers["x-request-id"] == "typed-1"
    sent["bentoml"] = (trace_id, span_id)

    header, trace_id, span_id = traceparent(0x33)
    pb = tfserving_protos()
    request = pb.predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    array_to_tensor(np.asarray(X, np.float32), request.inputs["x"])
    with grpc.insecure_channel(server.tf_grpc) as channel:
        stub = pb.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        _, call = stub.Predict.with_call(request, metadata=(("traceparent", header),), timeout=10)
    assert dict(call.trailing_metadata())["x-trace-id"] == trace_id
    sent["tfserving_grpc"] = (trace_id, span_id)

    wanted = {trace_id for trace_id, _ in sent.values()}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        traces: dict[str, dict[str, Any]] = {}
        for resource, span in receiver.spans():
            traces.setdefault(span.trace_id.hex(), {})[span.name] = (resource, span)
        if all(len(traces.get(t, {})) == 4 for t in wanted):
            break
        time.sleep(0.2)
    assert set(receiver.paths) == {"/v1/traces"}
    for protocol, (trace_id, span_id) in sent.items():
        spans = traces.get(trace_id, {})
        assert sorted(spans) == ["compute", "encode", "ingress", "queue"], (protocol, sorted(spans))
        resource, ingress = spans["ingress"]
        assert resource["service.name"] == "e2e-serving"
        assert ingress.parent_span_id.hex() == span_id, protocol  # the client's span is the parent
        attributes = {a.key: a.value for a in ingress.attributes}
        assert attributes["serving.protocol"].string_value == protocol
        assert (
            attributes["serving.model"].string_value == "m" and attributes["serving.version"].int_value == 2
        )
        assert attributes["serving.status"].int_value == 200
        for child in ("queue", "compute", "encode"):
            assert spans[child][1].parent_span_id == ingress.span_id, (protocol, child)
