"""``/readyz`` is the server's readiness, not one worker's (:class:`service.bento.workers.ServerReadiness`).

A real ``bentoml serve`` with two workers; the test stops the second worker (SIGSTOP) as soon as it
exists, long before it has imported the service. The first worker loads and answers, but ``/readyz`` and
the V2 server-ready route must stay 503 until the second has loaded too; once the second is resumed the
server becomes ready, and every request on a new connection after that is answered 200 (whichever
worker takes it). Without the server-wide readiness the first worker says ready while the second is
stopped, and a probe would send traffic to a pod whose other worker cannot answer.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import requests

from tests.server import Server
from tests.service.bento.test_grpc_lifecycle_e2e import workers
from tests.service.modelfactory import write_scale_version

pytestmark = pytest.mark.e2e


def _status(url: str) -> int | None:
    """The status of a GET on a new connection (``None``: no answer within 0.5 s, a stopped worker's)."""
    try:
        return requests.get(url, timeout=0.5, headers={"Connection": "close"}).status_code
    except requests.RequestException:
        return None


def _first_worker_ready(server: Server, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if server.metric("serving_worker_ready") >= 1:
                return
        except requests.RequestException:  # reached the stopped worker
            pass
        time.sleep(0.1)
    raise AssertionError(f"the first worker did not load:\n{server.log()}")


def test_readyz_waits_until_every_worker_has_loaded(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_scale_version(repo, "m", 1, 1.0)
    server = Server(repo, tmp_path / "server.log", workers=2)
    started: list[BaseException | None] = []
    starter = threading.Thread(target=lambda: started.append(_start(server)), daemon=True)
    starter.start()
    stopped: psutil.Process | None = None
    try:
        deadline = time.monotonic() + 60
        while stopped is None:
            assert time.monotonic() < deadline, f"no second worker:\n{server.log()}"
            found = workers(server) if server.proc is not None else []
            if len(found) == 2:
                stopped = max(found, key=lambda p: p.create_time())
                os.kill(stopped.pid, signal.SIGSTOP)
            time.sleep(0.005)
        _first_worker_ready(server, time.monotonic() + 60)
        answers = []
        until = time.monotonic() + 2.0
        while time.monotonic() < until:
            answers += [_status(server.url + "/readyz"), _status(server.url + "/v2/health/ready")]
        counts = Counter(answers)
        assert counts[503], f"the loaded worker answered nothing: {counts}"
        assert not counts[200], f"ready with one worker of two stopped: {counts}"
        assert server.metric("serving_worker_ready") == 1, "the stopped worker had not loaded"
        os.kill(stopped.pid, signal.SIGCONT)
        stopped = None
        starter.join(90)
        assert started == [None], f"not ready after the second worker resumed: {started}"
        statuses = [
            requests.post(
                server.url + "/v1/predict",
                json={"model": "m", "inputs": [[1, 2, 3, 4]]},
                headers={"Connection": "close"},
                timeout=10,
            ).status_code
            for _ in range(20)
        ]
        assert statuses == [200] * 20
        assert _status(server.url + "/readyz") == 200
    finally:
        if stopped is not None:
            os.kill(stopped.pid, signal.SIGCONT)
        server.stop()


def _start(server: Server) -> BaseException | None:
    """Start ``server`` and wait for ``/readyz`` (and every worker's ready metric); the error, if any."""
    try:
        server.start(timeout=90)
    except BaseException as exc:  # reported by the test's thread
        return exc
    return None
