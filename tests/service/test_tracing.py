"""OpenTelemetry spans in-process: the real app (``build_app``), data plane, batcher and ONNX Runtime over the
demo repository (model ``m``: version 2 ×2 is the default), the real gRPC servers on loopback, and the
SDK's in-memory exporter in place of OTLP (``tests/service/test_tracing_e2e.py`` exports for real)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from service import tracing
from service.bento.app import build_app
from service.bento.grpc_server import start_grpc, stop_grpc
from service.dataplane import DataPlane
from service.models.registry import ModelRegistry
from service.protocols.grpc_errors import TRACED
from service.protocols.tfserving import grpc as tfserving_grpc
from service.protocols.tfserving.codec import array_to_tensor
from service.protocols.tfserving.protos import tfserving_protos
from service.protocols.v2 import grpc as v2_grpc
from service.settings import Settings
from tests.conftest import ROOT
from tests.server import free_port
from tests.service.modelfactory import write_demo_repo

if TYPE_CHECKING:  # OpenTelemetry is imported where it is used: the "off" test's process must not load it
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

X = [[1.0, 2.0, 3.0, 4.0]]
CLIENT_TRACE, CLIENT_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
REST = {  # protocol -> (path, body)
    "native": ("/v1/predict", {"model": "m", "inputs": X}),
    "tfserving_rest": ("/v1/models/m:predict", {"instances": X}),
    "v2_rest": ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X[0]}]}),
}  # fmt: skip


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_repo(tmp_path_factory.mktemp("tracing") / "repo")


def in_memory() -> InMemorySpanExporter:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on (every request sampled) into the SDK's in-memory exporter."""
    memory = in_memory()
    tracing.configure(Settings(tracing="otlp"), exporter=memory)
    yield memory
    tracing.shutdown()


@dataclass
class Rig:
    http: httpx.AsyncClient
    tf: Any
    v2: service_pb2_grpc.GRPCInferenceServiceStub


@asynccontextmanager
async def serving(repo: Path) -> AsyncIterator[Rig]:
    """The app in-process (ASGI) and both gRPC servers on loopback ports, over one data plane."""
    settings = Settings(repository=repo, poll_interval_s=0, grpc_host="127.0.0.1",
                        grpc_tfserving_port=free_port(), grpc_v2_port=free_port())  # fmt: skip
    dataplane = DataPlane(ModelRegistry(settings))
    await dataplane.registry.start()
    server = await start_grpc(dataplane, settings)
    transport = httpx.ASGITransport(app=build_app(dataplane))
    try:
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://serving.test") as http,
            grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_tfserving_port}") as tf_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_v2_port}") as v2_channel,
        ):
            tf = tfserving_protos().prediction_service_pb2_grpc.PredictionServiceStub(tf_channel)
            yield Rig(http, tf, service_pb2_grpc.GRPCInferenceServiceStub(v2_channel))
    finally:
        await stop_grpc(server, 0)
        await dataplane.registry.close()


def finished(memory: InMemorySpanExporter) -> list[ReadableSpan]:
    assert tracing.tracer is not None and tracing.tracer.flush()
    found = list(memory.get_finished_spans())
    memory.clear()
    return found


def one_trace(found: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    """The spans of the one trace in ``found`` by name, each name once."""
    names = [s.name for s in found]
    assert len(set(names)) == len(names), names
    assert len({s.context.trace_id for s in found}) == 1
    return {s.name: s for s in found}


def check_request_trace(
    found: list[ReadableSpan], protocol: str, request_id: str, parent: bool
) -> ReadableSpan:
    """ingress (SERVER) with queue, compute and encode as its children, in time order; its attributes."""
    from opentelemetry.trace import SpanKind, StatusCode

    spans = one_trace(found)
    assert sorted(spans) == ["compute", "encode", "ingress", "queue"]
    ingress = spans["ingress"]
    assert ingress.kind == SpanKind.SERVER
    if parent:  # the client's span is the parent: same trace, its span id
        assert format(ingress.context.trace_id, "032x") == CLIENT_TRACE
        assert ingress.parent is not None and format(ingress.parent.span_id, "016x") == CLIENT_SPAN
        assert ingress.parent.is_remote
    else:
        assert ingress.parent is None
    for name in ("queue", "compute", "encode"):
        assert spans[name].parent is not None and spans[name].parent.span_id == ingress.context.span_id, name
    queue, compute, encode = spans["queue"], spans["compute"], spans["encode"]
    assert ingress.start_time <= queue.start_time <= queue.end_time <= compute.start_time  # type: ignore[operator]
    assert compute.start_time < compute.end_time <= encode.start_time <= encode.end_time <= ingress.end_time  # type: ignore[operator]
    attributes = dict(ingress.attributes or {})
    assert attributes["serving.protocol"] == protocol
    assert attributes["serving.model"] == "m" and attributes["serving.version"] == 2
    assert attributes["serving.rows"] == 1 and attributes["serving.status"] == 200
    assert attributes["serving.request_id"] == request_id
    assert dict(compute.attributes or {})["serving.batch_rows"] == 1
    assert ingress.resource.attributes["service.name"] == "keras-serving"
    assert ingress.status.status_code == StatusCode.UNSET
    return ingress


@pytest.mark.parametrize("protocol", list(REST))
def test_rest_request_is_one_trace_under_the_clients_span(
    repo: Path, spans: InMemorySpanExporter, protocol: str
) -> None:
    path, body = REST[protocol]

    async def main() -> httpx.Response:
        async with serving(repo) as rig:
            headers = {"traceparent": TRACEPARENT, "x-request-id": f"req-{protocol}"}
            return await rig.http.post(path, json=body, headers=headers)

    answer = asyncio.run(main())
    assert answer.status_code == 200, answer.text
    ingress = check_request_trace(finished(spans), protocol, f"req-{protocol}", parent=True)
    assert answer.headers["x-trace-id"] == CLIENT_TRACE
    assert answer.headers["x-request-id"] == f"req-{protocol}" and answer.headers["x-model-version"] == "2"
    assert dict(ingress.attributes or {})["http.response.status_code"] == 200


def test_without_traceparent_a_new_trace_whose_id_is_returned(
    repo: Path, spans: InMemorySpanExporter
) -> None:
    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with serving(repo) as rig:
            v2 = {**REST["v2_rest"][1], "id": "body-id-7"}  # the V2 body id becomes the request id
            garbled = {"traceparent": "00-not-a-trace-01"}  # invalid: ignored, a new trace starts
            return await rig.http.post("/v2/models/m/infer", json=v2), await rig.http.post(
                "/v1/predict", json=REST["native"][1], headers=garbled
            )

    first, second = asyncio.run(main())
    found = finished(spans)
    by_trace: dict[str, list[ReadableSpan]] = {}
    for span in found:
        by_trace.setdefault(format(span.context.trace_id, "032x"), []).append(span)
    assert set(by_trace) == {first.headers["x-trace-id"], second.headers["x-trace-id"]}
    assert CLIENT_TRACE not in by_trace
    check_request_trace(by_trace[first.headers["x-trace-id"]], "v2_rest", "body-id-7", parent=False)
    assert first.json()["id"] == "body-id-7" == first.headers["x-request-id"]
    check_request_trace(
        by_trace[second.headers["x-trace-id"]], "native", second.headers["x-request-id"], False
    )


def test_an_error_is_traced_with_its_status_and_no_model_work(
    repo: Path, spans: InMemorySpanExporter
) -> None:
    from opentelemetry.trace import StatusCode

    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with serving(repo) as rig:
            unknown = await rig.http.post("/v1/models/nope:predict", json={"instances": X})
            broken = await rig.http.post("/v1/predict", json={"model": "broken", "inputs": X})
            return unknown, broken

    unknown, broken = asyncio.run(main())
    assert unknown.status_code == 404 and broken.status_code == 503
    found = finished(spans)
    assert [s.name for s in found] == ["ingress", "ingress"]  # no queue, compute or encode
    by_status = {dict(s.attributes or {})["serving.status"]: s for s in found}
    assert set(by_status) == {404, 503}
    assert format(by_status[404].context.trace_id, "032x") == unknown.headers["x-trace-id"]
    assert dict(by_status[404].attributes or {})["serving.request_id"] == unknown.headers["x-request-id"]
    assert by_status[404].status.status_code == StatusCode.UNSET  # a client error is not the server's
    assert by_status[503].status.status_code == StatusCode.ERROR


def tf_request(name: str) -> Any:
    pb = tfserving_protos()
    request = pb.predict_pb2.PredictRequest()
    request.model_spec.name = name
    array_to_tensor(np.asarray(X, np.float32), request.inputs["x"])
    return request


def v2_request(name: str) -> service_pb2.ModelInferRequest:
    contents = service_pb2.InferTensorContents(fp32_contents=X[0])
    tensor = service_pb2.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP32", shape=[1, 4], contents=contents
    )
    return service_pb2.ModelInferRequest(model_name=name, inputs=[tensor])


def test_grpc_calls_are_traced_and_return_the_trace_id(repo: Path, spans: InMemorySpanExporter) -> None:
    metadata = (("traceparent", TRACEPARENT), ("x-request-id", "grpc-1"))

    async def main() -> dict[str, Any]:
        async with serving(repo) as rig:
            tf = rig.tf.Predict(tf_request("m"), metadata=metadata, timeout=10)
            await tf
            tf_trailing = dict(await tf.trailing_metadata())
            tf_spans = finished(spans)
            v2 = rig.v2.ModelInfer(v2_request("m"), metadata=metadata, timeout=10)
            answer = await v2
            v2_trailing = dict(await v2.trailing_metadata())
            v2_spans = finished(spans)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await rig.v2.ModelInfer(v2_request("nope"), metadata=metadata, timeout=10)
            return {"tf": (tf_trailing, tf_spans), "v2": (v2_trailing, v2_spans), "answer": answer,
                    "error": caught.value, "error_spans": finished(spans)}  # fmt: skip

    got = asyncio.run(main())
    for key, protocol in (("tf", "tfserving_grpc"), ("v2", "v2_grpc")):
        trailing, found = got[key]
        ingress = check_request_trace(found, protocol, "grpc-1", parent=True)
        attributes = dict(ingress.attributes or {})
        assert attributes["rpc.system"] == "grpc" and attributes["rpc.grpc.status_code"] == 0
        assert trailing["x-trace-id"] == CLIENT_TRACE and trailing["x-request-id"] == "grpc-1"
    assert got["answer"].id == "grpc-1"
    error: grpc.aio.AioRpcError = got["error"]
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert dict(error.trailing_metadata() or ())["x-trace-id"] == CLIENT_TRACE
    (failed,) = got["error_spans"]
    attributes = dict(failed.attributes or {})
    assert attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert attributes["serving.status"] == 404 and attributes["rpc.method"] == "ModelInfer"


def test_sample_ratio_zero_records_nothing_but_follows_a_sampled_client(repo: Path) -> None:
    memory = in_memory()
    tracing.configure(Settings(tracing="otlp", tracing_sample_ratio=0.0), exporter=memory)

    async def main() -> tuple[httpx.Response, list[ReadableSpan], httpx.Response]:
        async with serving(repo) as rig:
            unsampled = await rig.http.post("/v1/predict", json=REST["native"][1])
            between = finished(memory)
            sampled = await rig.http.post(
                "/v1/predict", json=REST["native"][1], headers={"traceparent": TRACEPARENT}
            )
            return unsampled, between, sampled

    try:
        unsampled, between, sampled = asyncio.run(main())
        assert between == []
        assert len(unsampled.headers["x-trace-id"]) == 32  # the id exists, nothing was recorded
        assert sampled.headers["x-trace-id"] == CLIENT_TRACE
        check_request_trace(finished(memory), "native", sampled.headers["x-request-id"], parent=True)
    finally:
        tracing.shutdown()


def test_off_configures_nothing() -> None:
    memory = in_memory()
    assert tracing.configure(Settings(tracing="off"), exporter=memory) is None
    assert tracing.tracer is None


def test_off_serves_every_protocol_without_opentelemetry_loaded(repo: Path) -> None:
    """With tracing off the ingresses never call into OpenTelemetry: a fresh process serves REST and gRPC
    requests and has not even imported it (nor sent an X-Trace-Id)."""
    script = f"""
import asyncio, sys
from pathlib import Path
from tests.service.test_tracing import REST, serving, tf_request, v2_request

async def main():
    async with serving(Path({str(repo)!r})) as rig:
        for path, body in REST.values():
            answer = await rig.http.post(path, json=body, headers={{"traceparent": {TRACEPARENT!r}}})
            assert answer.status_code == 200 and "x-trace-id" not in answer.headers, answer.headers
        tf = rig.tf.Predict(tf_request("m"), timeout=10)
        await tf
        v2 = rig.v2.ModelInfer(v2_request("m"), timeout=10)
        await v2
        for call in (tf, v2):
            assert "x-trace-id" not in dict(await call.trailing_metadata())

asyncio.run(main())
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
print("LOADED", loaded)
"""
    env = {**os.environ, "SERVING_TRACING": "off"}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOADED []" in out.stdout, out.stdout[-2000:]


def test_exporters_and_grpc_protocol_names() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    assert isinstance(tracing.exporter_for(Settings(tracing="console")), ConsoleSpanExporter)
    otlp = tracing.exporter_for(Settings(tracing="otlp", tracing_endpoint="http://127.0.0.1:9/v1/traces"))
    assert isinstance(otlp, OTLPSpanExporter) and otlp._endpoint == "http://127.0.0.1:9/v1/traces"
    assert TRACED == {"Predict": tfserving_grpc.PROTOCOL, "ModelInfer": v2_grpc.PROTOCOL}
    with pytest.raises(ValueError, match="tracing"):
        Settings(tracing="jaeger")  # type: ignore[arg-type]
