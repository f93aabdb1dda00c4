"""Each BentoML worker listens on a socket of its own (SO_REUSEPORT), so connections spread over workers.

Checked on real ``bentoml serve`` processes with two workers: the workers' listening sockets are
distinct kernel sockets (one shared inode without the setting), sixteen connections opened at once end
up on both workers, and a second server on a busy port fails with a clear message instead of sharing it.
"""

from __future__ import annotations

import http.client
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from tests.server import ROOT, Server
from tests.service.modelfactory import write_scale_version

pytestmark = pytest.mark.e2e
BODY = b'{"model": "m", "inputs": [[1, 2, 3, 4]]}'


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("reuseport") / "models"
    write_scale_version(repo, "m", 1, 1.0)
    return repo


def _workers(server: Server) -> list[psutil.Process]:
    assert server.proc is not None
    children = psutil.Process(server.proc.pid).children(recursive=True)
    return [p for p in children if "_bentoml_impl.worker.service" in " ".join(p.cmdline())]


def _sockets(worker: psutil.Process, port: int, status: str, peers: set[int] | None = None) -> list[str]:
    """Kernel socket identities (``socket:[inode]``) of ``worker``'s TCP sockets on ``port`` in ``status``
    (only those whose client port is in ``peers``, when given)."""
    return [
        os.readlink(f"/proc/{worker.pid}/fd/{c.fd}")
        for c in worker.net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.status == status and c.fd != -1
        if peers is None or (c.raddr and c.raddr.port in peers)
    ]


def _serve(repo: Path, log: Path, reuse_port: bool) -> Iterator[Server]:
    with Server(repo, log, workers=2, SERVING_REUSE_PORT=str(reuse_port).lower()) as srv:
        yield srv


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(repo, tmp_path_factory.mktemp("per-worker") / "server.log", reuse_port=True)


@pytest.fixture(scope="module")
def shared_server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(repo, tmp_path_factory.mktemp("shared") / "server.log", reuse_port=False)


def _listening(server: Server) -> list[list[str]]:
    workers = _workers(server)
    assert len(workers) == 2
    return [_sockets(w, server.port, psutil.CONN_LISTEN) for w in workers]


def test_each_worker_has_its_own_listening_socket(server: Server) -> None:
    listening = _listening(server)
    assert all(len(s) == 1 for s in listening) and listening[0] != listening[1], listening


def test_with_reuse_port_off_the_workers_share_bentomls_one_socket(shared_server: Server) -> None:
    listening = _listening(shared_server)
    assert all(len(s) == 1 for s in listening) and listening[0] == listening[1], listening


def test_connections_opened_at_once_spread_over_both_workers(server: Server) -> None:
    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(16)]
    try:
        for conn in connections:
            conn.connect()
        for conn in connections:
            conn.request("POST", "/v1/predict", BODY, {"Content-Type": "application/json"})
        assert all(conn.getresponse().status == 200 for conn in connections)
        ours = {conn.sock.getsockname()[1] for conn in connections if conn.sock is not None}
        assert len(ours) == 16
        # only this test's connections: the server helper's own polling may still hold one open
        per_worker = [len(_sockets(w, server.port, psutil.CONN_ESTABLISHED, ours)) for w in _workers(server)]
        assert sum(per_worker) == 16 and min(per_worker) > 0, per_worker  # all on one: p = 2**-15
    finally:
        for conn in connections:
            conn.close()


def test_a_second_server_on_a_busy_port_fails_clearly(server: Server, tmp_path: Path, repo: Path) -> None:
    second = Server(repo, tmp_path / "second.log", workers=2)
    second.port = server.port
    env = {**second.env, "SERVING_PORT": str(server.port)}
    done = subprocess.run(second.command(), cwd=ROOT, env=env, capture_output=True, timeout=90)
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode != 0, output[-2000:]
    assert f"cannot listen on 127.0.0.1:{server.port}" in output, output[-2000:]
    assert requests.post(f"{server.url}/v1/predict", data=BODY, timeout=10).status_code == 200  # unharmed
