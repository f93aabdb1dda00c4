"""The fast lane: our routes skip BentoML's middleware, keep a request timeout (504), and can be turned off.

The first tests drive :class:`FastLane` with small ASGI apps to pin down its timer (the cases a real
server cannot time reliably); the others run real ``bentoml serve`` processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from service.bento.lane import FastLane
from service.protocols.routes import is_ours
from tests.server import Server
from tests.service.modelfactory import write_scale_version

ROW = {"model": "m", "inputs": [[1.0, 2.0, 3.0, 4.0]]}


def _app(delay_s: float, tag: bytes, body_delay_s: float = 0.0) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(delay_s)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(body_delay_s)
        await send({"type": "http.response.body", "body": tag})

    return app


def _call(lane: FastLane, path: str) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(lane({"type": "http", "path": path, "method": "POST"}, receive, send))  # type: ignore[arg-type]
    return sent


def test_paths_split_between_our_app_and_bentoml() -> None:
    lane = FastLane(_app(0, b"bento"), _app(0, b"ours"), timeout_s=1)
    for path in ["/v1/predict", "/v1/models/m:predict", "/v2", "/v2/models/m/infer", "/readyz/m"]:
        assert is_ours(path) and _call(lane, path)[-1]["body"] == b"ours", path
    for path in ["/metrics", "/livez", "/readyz", "/v2x", "/docs.json", "/"]:
        assert not is_ours(path) and _call(lane, path)[-1]["body"] == b"bento", path


def test_a_request_past_the_timeout_gets_a_504_in_the_json_error_shape() -> None:
    lane = FastLane(_app(0, b"bento"), _app(5, b"late"), timeout_s=0.05)
    started = time.perf_counter()
    start, body = _call(lane, "/v1/predict")
    assert time.perf_counter() - started < 2
    assert start["status"] == 504 and (b"content-type", b"application/json") in start["headers"]
    assert orjson.loads(body["body"]) == {"error": "the request was not answered within 0.05 s"}


def test_an_answer_that_has_started_is_not_cut_off_by_the_timeout() -> None:
    lane = FastLane(_app(0, b"bento"), _app(0, b"slow body", body_delay_s=0.2), timeout_s=0.05)
    start, body = _call(lane, "/v1/predict")
    assert start["status"] == 200 and body["body"] == b"slow body"


def test_one_timer_keeps_every_waiting_requests_deadline() -> None:
    """100 requests waiting at once: one loop timer (asyncio.timeout would arm 100); those still
    waiting at their deadline get the 504, the ones answered before it their answer."""
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/v1/predict":  # the fast ones
            await release.wait()
        else:
            await asyncio.Event().wait()  # never answered
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    lane = FastLane(_app(0, b"bento"), app, timeout_s=0.3)

    async def one(path: str) -> int:
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await lane({"type": "http", "path": path, "method": "POST"}, receive, send)  # type: ignore[arg-type]
        return statuses[0]

    async def main() -> tuple[int, list[int]]:
        paths = ["/v1/predict", "/v2/models/m/infer"] * 50
        tasks = [asyncio.create_task(one(p)) for p in paths]
        await asyncio.sleep(0.05)
        timers = len(asyncio.get_running_loop()._scheduled)  # type: ignore[attr-defined]
        release.set()
        return timers, await asyncio.gather(*tasks)

    started = time.perf_counter()
    timers, statuses = asyncio.run(main())
    assert timers == 1
    assert statuses == [200, 504] * 50
    assert time.perf_counter() - started < 2


def test_the_timeout_holds_on_every_loop_the_lane_serves() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0 if scope["path"] == "/v1/predict" else 5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    lane = FastLane(_app(0, b"bento"), app, timeout_s=0.05)
    for _ in range(2):  # the fast request's loop ends with the timer still armed on it
        assert _call(lane, "/v1/predict")[0]["status"] == 200
        started = time.perf_counter()
        assert _call(lane, "/v2/models/m/infer")[0]["status"] == 504
        assert time.perf_counter() - started < 2


def test_a_cancellation_that_is_not_the_timeout_is_not_turned_into_a_504() -> None:
    lane = FastLane(_app(0, b"bento"), _app(5, b"late"), timeout_s=10)
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    async def main() -> None:
        task = asyncio.create_task(
            lane({"type": "http", "path": "/v1/predict", "method": "POST"}, receive, send)
        )  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        task.cancel()  # the server closing the connection, say
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not lane.deadlines._waiting, "a cancelled request leaves no deadline behind"

    asyncio.run(main())
    assert sent == []


# ---- real servers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("lane") / "models"
    write_scale_version(repo, "m", 1, 3.0)
    write_scale_version(repo, "waits", 1, 1.0)
    # a lone request for "waits" waits 5 s for company, longer than the server's 0.5 s request timeout
    (repo / "serving.yaml").write_text("models:\n  waits: {max_wait_ms: 5000, max_batch_size: 64}\n")
    return repo


@pytest.fixture(scope="module", params=["lane", "bentoml-stack"])
def server(
    request: pytest.FixtureRequest, repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp(request.param) / "server.log"
    env = {"SERVING_REQUEST_TIMEOUT_S": "0.5", "SERVING_FAST_LANE": str(request.param == "lane").lower()}
    with Server(repo, log, **env) as srv:
        srv.lane = request.param == "lane"  # type: ignore[attr-defined]
        yield srv


@pytest.mark.e2e
def test_predictions_are_the_same_either_way_and_only_bentoml_stack_counts_them(server: Server) -> None:
    for _ in range(3):
        answer = requests.post(f"{server.url}/v1/predict", json=ROW, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"]["y"] == [[3.0, 6.0, 9.0, 12.0]]
    bad = requests.post(f"{server.url}/v1/predict", data=b"{nope", timeout=10)
    assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]
    lane = server.lane  # type: ignore[attr-defined]
    assert server.metric("bentoml_service_request_total", endpoint="/v1/predict") == (0 if lane else 4)
    assert server.metric("bentoml_service_request_total", endpoint="/readyz") >= 1  # its own routes
    # the lane counts what it answers instead, by API, method and status
    ours = {"api": "native", "method": "POST"}
    assert server.metric("serving_http_requests_total", **ours, code="200") == (3 if lane else 0)
    assert server.metric("serving_http_requests_total", **ours, code="400") == (1 if lane else 0)
    assert server.metric("serving_http_request_duration_seconds_count", api="native") == (4 if lane else 0)


@pytest.mark.e2e
def test_a_request_over_the_timeout_is_a_504_and_others_are_still_served(server: Server) -> None:
    started = time.perf_counter()
    late = requests.post(f"{server.url}/v1/predict", json={**ROW, "model": "waits"}, timeout=10)
    waited = time.perf_counter() - started
    assert late.status_code == 504, late.text
    assert "0.5" in late.json()["error"]
    assert 0.4 < waited < 3.0
    answer = requests.post(f"{server.url}/v1/predict", json=ROW, timeout=10)
    assert answer.status_code == 200 and answer.json()["outputs"]["y"] == [[3.0, 6.0, 9.0, 12.0]]
