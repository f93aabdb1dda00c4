"""A killed worker is restarted by the server, and only the requests it had in flight fail.

Eight keep-alive HTTP clients send back to back over two workers; the test finds out from the workers'
own sockets which client is connected to which worker, then kills one worker with SIGKILL. Clients of
the other worker must see no error at all; a client of the killed one loses at most the request it had
in flight, then reconnects and is served. The restarted worker loads its models before it listens, so
no connection meets a worker that cannot answer yet.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.server import Server
from tests.service.bento.clients import Client
from tests.service.bento.test_grpc_lifecycle_e2e import workers
from tests.service.modelfactory import write_scale_version

pytestmark = pytest.mark.e2e


def owner(server_workers: list[psutil.Process], local_port: int) -> int | None:
    """The pid of the worker holding the server side of the client connection from ``local_port``."""
    for worker in server_workers:
        for conn in worker.net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == local_port and conn.status == psutil.CONN_ESTABLISHED:
                return worker.pid
    return None


def test_a_killed_worker_is_restarted_and_only_its_in_flight_requests_fail(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_scale_version(repo, "m", 1, 1.0)
    stop = threading.Event()
    with Server(repo, tmp_path / "server.log", workers=2) as server:
        before = workers(server)
        assert len(before) == 2
        clients = [Client("http", server.url.removeprefix("http://"), stop).start() for _ in range(8)]
        try:
            time.sleep(1.0)
            ports = {id(c): c.outcomes[-1].port for c in clients}
            owners = {id(c): owner(before, ports[id(c)]) for c in clients}
            victim = next(pid for pid in (owners[id(c)] for c in clients) if pid is not None)
            assert len(set(owners.values())) == 2, f"all clients on one worker: {owners}"
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while True:
                now = workers(server)
                if len(now) == 2 and victim not in {p.pid for p in now}:
                    break
                assert time.monotonic() < deadline, f"the killed worker was not restarted:\n{server.log()}"
                time.sleep(0.2)
            time.sleep(2.0)  # the new worker loads and starts listening; the clients keep going
        finally:
            stop.set()
            for client in clients:
                client.join()
        # when the killed worker's sockets closed: its clients' first lost in-flight request (SIGKILL's
        # teardown of a worker can take tens of ms on a loaded machine), else the kill itself
        closed_at = min(
            (f.at for c in clients if owners[id(c)] == victim for f in c.failures() if not f.fresh),
            default=killed_at,
        )
        for client in clients:
            failures = client.failures()
            if owners[id(client)] == victim:
                # its in-flight request, and possibly an instant reconnect that the kernel routed to the
                # dying worker's listener (reset while that socket closed, so never received)
                in_flight = [f for f in failures if not f.fresh]
                reconnects = [f for f in failures if f.fresh]
                assert len(in_flight) <= 1, (
                    f"a client of the killed worker lost more than one request: {failures}"
                )
                assert all(f.at - closed_at < 0.05 and "reset" in f.what.lower() for f in reconnects), (
                    f"killed at {killed_at}, sockets closed at {closed_at}: {failures}"
                )
                assert all(f.at >= killed_at for f in failures)
            else:
                assert not failures, f"a client of the surviving worker saw errors: {failures}"
            assert any(o.what == "ok" and o.at > killed_at + 1 for o in client.outcomes), "not served again"
        assert sum(not f.fresh for c in clients if owners[id(c)] == victim for f in c.failures()) >= 1, (
            "killing the worker failed nothing: the test did not hit the requests it had in flight"
        )
        restarted = next(p for p in workers(server) if p.pid not in {b.pid for b in before})
        deadline = time.monotonic() + 60  # a loaded machine may take a while to import and load
        while not any(c.status == psutil.CONN_LISTEN for c in restarted.net_connections("tcp")):
            assert restarted.is_running() and time.monotonic() < deadline, server.log()[-4000:]
            time.sleep(0.1)
        for _ in range(40):  # new connections reach the restarted worker too, and it answers
            assert requests.post(
                f"{server.url}/v1/predict", json={"model": "m", "inputs": [[1, 2, 3, 4]]}, timeout=10
            ).json()["outputs"]["y"] == [[1, 2, 3, 4]]
        assert restarted.is_running()
        log = server.log()
        assert "worker restarted: loading the models before listening" in log, log[-4000:]
