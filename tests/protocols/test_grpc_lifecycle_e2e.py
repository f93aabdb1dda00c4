"""The gRPC servers live in every worker: they survive a worker being killed and restarted, and shut
down with the service, leaving their ports free."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient

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


def port_in_use(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


def test_grpc_survives_a_worker_restart_and_stops_with_the_service(tmp_path: Path) -> None:
    write_scale_version(tmp_path / "repo", "m", 1, 1.0)
    server = Server(tmp_path / "repo", tmp_path / "server.log", workers=2)
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
    assert server.proc is not None and server.proc.returncode is not None
    assert (
        not port_in_use(server.v2_grpc)
        and not port_in_use(server.tf_grpc)
        and not port_in_use(f"127.0.0.1:{server.port}")
    )
