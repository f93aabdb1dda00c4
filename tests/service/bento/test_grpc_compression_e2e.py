"""``SERVING_GRPC_COMPRESSION`` on real servers: what leaves the server is counted by a byte-counting TCP
proxy on loopback between the client and the gRPC port. A compressible answer (4,000 equal rows) is a
fraction of its plain size from the gzip server, on both gRPC services, and decodes to the same values;
a client with compression disabled cannot read the gzip server's answers (the documented limit: gRPC
Python does not choose per call) but reads the default server's."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from service.protocols.tfserving.protos import tfserving_protos
from tests.server import Server, free_port
from tests.service.bento.security_helpers import tfserving_output, tfserving_predict_request
from tests.service.modelfactory import write_scale_version

pytestmark = pytest.mark.e2e
ROWS = np.ones((4000, 4), np.float32)


class CountingProxy:
    """Forwards loopback connections to ``target`` on a thread of its own; counts the bytes coming back."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.port = free_port()
        self.down = 0
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(5)

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(
            self._pipe(reader, up_writer, False), self._pipe(up_reader, writer, True), return_exceptions=True
        )

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, counted: bool) -> None:
        while data := await source.read(65536):
            if counted:
                self.down += len(data)
            sink.write(data)
            await sink.drain()
        sink.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    repo = tmp_path_factory.mktemp("repo")
    write_scale_version(repo, "m", 1, 2.0)
    logs = tmp_path_factory.mktemp("logs")
    with (
        Server(repo, logs / "plain.log") as plain,
        Server(repo, logs / "gzip.log", SERVING_GRPC_COMPRESSION="gzip") as gzip,
    ):
        yield {"none": plain, "gzip": gzip}


def answer_bytes(address: str, call: str) -> tuple[int, np.ndarray]:
    """Bytes that came back for one V2 ``ModelInfer`` (tritonclient) or TF Serving ``Predict`` of
    :data:`ROWS` through a counting proxy (after one call that opened the connection), and the output."""
    proxy = CountingProxy(address)
    try:
        target = f"127.0.0.1:{proxy.port}"
        if call == "v2":
            client = grpcclient.InferenceServerClient(target)
            inp = grpcclient.InferInput("x", list(ROWS.shape), "FP32")
            inp.set_data_from_numpy(ROWS)
            client.infer("m", [inp])
            before = proxy.down
            output = client.infer("m", [inp]).as_numpy("y")
            client.close()
        else:
            request = tfserving_predict_request(ROWS)
            with grpc.insecure_channel(target) as channel:
                stub = tfserving_protos().prediction_service_pb2_grpc.PredictionServiceStub(channel)
                stub.Predict(request, timeout=10)
                before = proxy.down
                output = tfserving_output(stub.Predict(request, timeout=10))
        return proxy.down - before, output
    finally:
        proxy.close()


@pytest.mark.parametrize("service", ["v2", "tfserving"])
def test_gzip_answers_are_a_fraction_of_plain_ones_with_the_same_values(
    servers: dict[str, Server], service: str
) -> None:
    sizes = {}
    for mode, server in servers.items():
        address = server.v2_grpc if service == "v2" else server.tf_grpc
        sizes[mode], output = answer_bytes(address, service)
        np.testing.assert_array_equal(output, ROWS * 2)
    assert sizes["none"] > ROWS.nbytes, sizes  # the plain answer carries every float
    assert sizes["gzip"] < sizes["none"] / 10, sizes


def test_a_client_with_compression_disabled_reads_only_the_plain_server(servers: dict[str, Server]) -> None:
    # a compressible answer: gRPC sends one that compression would not shrink plain anyway
    request = service_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=list(ROWS.shape))
    request.raw_input_contents.append(ROWS.tobytes())
    identity_only = [("grpc.compression_enabled_algorithms_bitset", 1)]
    for mode, server in servers.items():
        with grpc.insecure_channel(server.v2_grpc, options=identity_only) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            if mode == "none":
                answer = stub.ModelInfer(request, timeout=10)
                outputs = np.frombuffer(answer.raw_output_contents[0], np.float32)
                np.testing.assert_array_equal(outputs, (ROWS * 2).ravel())
            else:
                with pytest.raises(grpc.RpcError) as refused:
                    stub.ModelInfer(request, timeout=10)
                assert refused.value.code() is grpc.StatusCode.INTERNAL
                assert "gzip" in str(refused.value.details())
