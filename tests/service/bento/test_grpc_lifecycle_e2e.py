"""The gRPC servers live in every worker: they survive a worker being killed and restarted, and shut
down with the service: on SIGTERM they close their ports while in-flight calls drain, and the service
exits by itself (status 0), leaving every port free."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import grpc
import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.server import Server
from tests.service.modelfactory import write_scale_version

pytestmark = pytest.mark.e2e


def workers(server: Server) -> list[psutil.Process]:
    assert server.proc is not None
    found = []
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "_bentoml_impl.worker.service" in " ".join(
                child.cmdline()
            ):
                found.append(child)
        except psutil.Error:  # exited meanwhile
            continue
    return found


def infer_ok(address: str, n: int) -> int:
    ok = 0
    for _ in range(n):
        client = grpcclient.InferenceServerClient(
            address
        )  # a new connection each time: any worker may answer
        inp = grpcclient.InferInput("x", [1, 4], "FP32")
        inp.set_data_from_numpy(np.ones((1, 4), np.float32))
        try:
            ok += int(client.infer("m", [inp], client_timeout=10).as_numpy("y")[0, 0] == 1.0)
        except Exception:  # counted as not ok
            pass
        finally:
            client.close()
    return ok


# A lone request to model "slow" waits this long for company: long enough to shut down meanwhile.
SLOW_WAIT_S = 4.0
IN_FLIGHT = 4


def bindable(address: str) -> bool:
    """Whether a plain socket (SO_REUSEADDR so TIME_WAIT does not count, but no SO_REUSEPORT) can listen on
    ``address``: false while any process still has a listener there, ours with SO_REUSEPORT included."""
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
            s.listen()
        except OSError:
            return False
    return True


def served(address: str, timeout: float = 0.3) -> bool:
    """Whether a fresh gRPC channel (its own connection) gets ready within ``timeout``."""
    with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return False
    return True


def free(address: str) -> bool:
    return not served(address) and bindable(address)


def slow_call(address: str) -> tuple[grpc.Channel, grpc.Future]:
    """A V2 ModelInfer on a connection of its own to the model that waits SLOW_WAIT_S before it runs."""
    channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    request = service_pb2.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(np.full((1, 4), 3.0, np.float32).tobytes())
    return channel, service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer.future(request, timeout=30)


def test_grpc_survives_a_worker_restart_and_stops_with_the_service(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_scale_version(repo, "m", 1, 1.0)
    write_scale_version(repo, "slow", 1, 1.0)
    (repo / "serving.yaml").write_text(
        f"models:\n  slow: {{max_wait_ms: {SLOW_WAIT_S * 1000:.0f}, max_batch_size: 8}}\n"
    )
    server = Server(repo, tmp_path / "server.log", workers=2)
    grpc_ports = [server.v2_grpc, server.tf_grpc]
    with server:
        before = workers(server)
        assert len(before) == 2
        assert infer_ok(server.v2_grpc, 10) == 10
        os.kill(before[0].pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = workers(server)
            if len(now) == 2 and before[0].pid not in {p.pid for p in now}:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the killed worker was not restarted:\n{server.log()}")
        time.sleep(3)  # the new worker loads its models and binds the gRPC ports again
        assert infer_ok(server.v2_grpc, 40) == 40
        restarted = next(p for p in workers(server) if p.pid != before[1].pid)
        listening = {
            c.laddr.port for c in restarted.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN
        }
        assert (
            int(server.v2_grpc.rsplit(":", 1)[1]) in listening
            and int(server.tf_grpc.rsplit(":", 1)[1]) in listening
        )
        assert not any(free(a) for a in grpc_ports), "the probes must see the ports served and bound now"

        # Shut down as an orchestrator does (SIGTERM to the `bentoml serve` process, nothing else), with
        # calls in flight: the service must stop its gRPC servers (no new connections, listeners closed)
        # while those calls drain, not merely lose them when its processes exit.
        alive = workers(server)
        calls = [slow_call(server.v2_grpc) for _ in range(IN_FLIGHT)]
        deadline = time.monotonic() + 10
        while server.metric("serving_inflight_requests", model="slow") < IN_FLIGHT:
            assert time.monotonic() < deadline, f"the slow calls never reached the batcher:\n{server.log()}"
            time.sleep(0.05)
        assert server.proc is not None
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        while not all(free(a) for a in grpc_ports):
            assert not all(f.done() for _, f in calls), (
                "the gRPC ports were still served or bound after the in-flight calls had finished: the "
                f"service's shutdown did not stop its gRPC servers\n{server.log()}"
            )
            assert time.monotonic() - signalled < SLOW_WAIT_S, "the gRPC ports stayed open during shutdown"
            time.sleep(0.05)
        assert any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in alive), (
            "the ports were freed only by the workers exiting"
        )
        for channel, call in calls:  # drained, not dropped
            np.testing.assert_array_equal(
                np.frombuffer(call.result(timeout=20).raw_output_contents[0], "<f4"), [3.0] * 4
            )
            channel.close()
        try:
            returncode = server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the service did not exit within 30 s of SIGTERM:\n{server.log()}"
            ) from None
        assert returncode == 0, f"exit status {returncode}:\n{server.log()}"
    deadline = time.monotonic() + 10
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in alive):
        assert time.monotonic() < deadline, "a worker outlived the service"
        time.sleep(0.1)
    for address in [*grpc_ports, f"127.0.0.1:{server.port}"]:
        assert bindable(address), f"{address} is still bound after shutdown"
    assert not any(served(a) for a in grpc_ports), "a gRPC port is still served after shutdown"
