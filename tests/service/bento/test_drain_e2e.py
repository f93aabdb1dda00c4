"""SIGTERM under load: keep-alive HTTP clients and gRPC clients on both servers lose nothing the server
received, readiness turns 503 at once, and the service exits 0 within the drain budget + 1 s.

The signal goes to the `bentoml serve` process only, as an orchestrator sends it. A request the server
never saw (a new connection refused after the listener closed, a gRPC call refused as UNAVAILABLE once
the gRPC server stops) is allowed; any other error, a wrong answer or a connection closed under a
request fails the test.

One gRPC exception: when a grpc.aio server stops, gRPC core cancels the calls that have arrived on the
wire but were not yet matched to a handler (CANCELLED, at most one or two per server at the moment of
the stop; measured standalone, the cancelled calls never reached a handler: handled == answered). They
never reached the service, so they count as not received, but only in the instant of the stop.
"""

from __future__ import annotations

import http.client
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.server import Server
from tests.service.bento.clients import Client
from tests.service.modelfactory import write_scale_version

pytestmark = pytest.mark.e2e
DRAIN_S = 4.0
FORWARD_S = 0.25
# `bentoml serve` passes SIGTERM on to its workers within a few ms when it gets the CPU; with 8 HTTP and
# 4 gRPC clients keeping both workers busy on 2 cores a full test run once saw an answer without
# Connection: close more than 0.1 s after the signal
# signal forwarded + gRPC stop begins: gRPC core cancels unmatched calls then (a CI run on a busy
# 2-core machine saw one 0.38 s after the signal)
STOP_S = 0.6


def poll_readiness(target: str, stop: threading.Event, seen: list[tuple[float, int | str]]) -> None:
    host, port = target.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    while not stop.is_set():
        try:
            conn.request("GET", "/readyz")
            answer = conn.getresponse()
            answer.read()
            seen.append((time.monotonic(), answer.status))
        except (OSError, http.client.HTTPException) as exc:
            seen.append((time.monotonic(), type(exc).__name__))
            conn.close()
            time.sleep(0.02)
        time.sleep(0.01)


def test_sigterm_drains_http_and_grpc_clients_and_exits_0_in_time(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_scale_version(repo, "m", 1, 1.0)
    server = Server(repo, tmp_path / "server.log", workers=2, SERVING_DRAIN_S=str(DRAIN_S))
    server.start()
    stop = threading.Event()
    http_target = server.url.removeprefix("http://")
    clients = [Client("http", http_target, stop) for _ in range(8)]
    clients += [Client("tfserving", server.tf_grpc, stop) for _ in range(2)]
    clients += [Client("v2", server.v2_grpc, stop) for _ in range(2)]
    readiness: list[tuple[float, int | str]] = []
    poller = threading.Thread(target=poll_readiness, args=(http_target, stop, readiness), daemon=True)
    try:
        for client in clients:
            client.start()
        poller.start()
        time.sleep(1.5)
        assert server.proc is not None
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        returncode = server.proc.wait(timeout=DRAIN_S + 10)
        exited = time.monotonic() - signalled
    finally:
        stop.set()
        for client in clients:
            client.join()
        poller.join(timeout=10)
        server.stop()
    assert returncode == 0, f"exit status {returncode}:\n{server.log()}"
    assert exited <= DRAIN_S + 1, f"exited {exited:.2f} s after SIGTERM:\n{server.log()}"
    failures = [
        (c.kind, o.what, round(o.at - signalled, 3))
        for c in clients
        for o in c.failures()
        if not (c.kind != "http" and o.what.startswith("StatusCode.CANCELLED") and o.at - signalled < STOP_S)
    ]
    assert not failures, f"{failures[:10]}\n{server.log()}"
    for client in clients:
        assert sum(o.what == "ok" and o.at < signalled for o in client.outcomes) > 10, client.kind
    after = [
        o for c in clients if c.kind == "http" for o in c.outcomes if o.at > signalled and o.what == "ok"
    ]
    assert after, "no HTTP request was answered after the signal: the connections were cut, not drained"
    # `bentoml serve` passes the signal on to its workers within a few ms (FORWARD_S allows for it)
    open_late = [round(o.at - signalled, 3) for o in after if o.at > signalled + FORWARD_S and not o.closing]
    assert not open_late, (
        f"answers while draining must close; these (s after the signal) did not: {open_late}"
    )
    statuses = [(at - signalled, s) for at, s in readiness if at > signalled]
    first_503 = next((at for at, s in statuses if s == 503), None)
    assert first_503 is not None and first_503 < FORWARD_S, (
        f"readiness did not turn 503 at once: {statuses[:10]}"
    )
    assert all(s != 200 for at, s in statuses if at > first_503), (
        f"ready again while draining: {statuses[:10]}"
    )
