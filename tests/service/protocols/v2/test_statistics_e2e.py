"""Triton's statistics extension against a real two-worker server, through tritonclient over HTTP and
gRPC: after a known mix of answered and failed requests, spread over both workers by one connection
each, every statistics answer (whichever worker gives it) counts all of them and has the latest runtime
call of each version; the figures agree with each other (rows, runtime calls, queue and compute counts)
and across transports; unknown names 404."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from tests.server import Server

pytestmark = pytest.mark.e2e
ANSWERED_V1, ROWS_V1, ANSWERED_V2, FAILED_V2 = 24, 3, 16, 5


def stats_of(server: Server, path: str = "/v2/models/stats") -> dict[tuple[str, str], dict[str, Any]]:
    answer = requests.get(server.url + path, timeout=10)  # a new connection: either worker answers
    assert answer.status_code == 200, answer.text
    return {(s["name"], s["version"]): s for s in answer.json()["model_stats"]}


def test_every_worker_counts_every_workers_requests(server: Server) -> None:
    before = stats_of(server)
    assert set(before) == {("broken", "1"), ("m", "1"), ("m", "2")}
    started_ms = time.time() * 1000
    x = [[1.0, 2.0, 3.0, 4.0]] * ROWS_V1
    for _ in range(ANSWERED_V1):  # a connection each: the kernel spreads them over both workers
        body = {"inputs": [{"name": "x", "shape": [ROWS_V1, 4], "datatype": "FP32", "data": x}]}
        assert requests.post(server.url + "/v2/models/m/versions/1/infer", json=body, timeout=10).ok
    for _ in range(ANSWERED_V2):
        assert requests.post(
            server.url + "/v1/predict", json={"model": "m", "inputs": [[1, 2, 3, 4]]}, timeout=10
        ).ok
    for _ in range(FAILED_V2):  # wrong shape: refused by version 2's signature
        bad = requests.post(server.url + "/v1/predict", json={"model": "m", "inputs": [[1, 2]]}, timeout=10)
        assert bad.status_code == 400
    for _ in range(4):  # the same figures from whichever worker answers
        after = stats_of(server)
        delta = {key: _minus(after[key], before[key]) for key in after}
        v1, v2 = delta["m", "1"], delta["m", "2"]
        assert v1["success"]["count"] == ANSWERED_V1 and v1["fail"]["count"] == 0
        assert v1["inference_count"] == ANSWERED_V1 * ROWS_V1
        assert 1 <= v1["execution_count"] <= ANSWERED_V1
        assert v1["queue"]["count"] == v1["compute_infer"]["count"] == ANSWERED_V1
        assert v1["success"]["ns"] > v1["compute_infer"]["ns"] > 0 and v1["queue"]["ns"] > 0
        assert v2["success"]["count"] == ANSWERED_V2 and v2["fail"]["count"] == FAILED_V2
        assert v2["fail"]["ns"] > 0 and v2["inference_count"] == ANSWERED_V2
        assert delta["broken", "1"]["success"]["count"] == 0
        # the latest runtime call of each version, whichever worker ran it (m 2's came last); never for
        # the version that did not load
        assert started_ms - 1 <= after["m", "1"]["last_inference"] <= after["m", "2"]["last_inference"]
        assert after["m", "2"]["last_inference"] <= time.time() * 1000 + 1
        assert after["broken", "1"]["last_inference"] == 0


def _minus(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The counts and times between two statistics of one version, flattened (``success`` -> its pair)."""
    flat: dict[str, Any] = {key: after[key] - before[key] for key in ("inference_count", "execution_count")}
    for key, figure in after["inference_stats"].items():
        was = before["inference_stats"][key]
        flat[key] = {"count": figure["count"] - was["count"], "ns": figure["ns"] - was["ns"]}
    return flat


def test_tritonclient_reads_the_same_figures_over_both_transports(server: Server) -> None:
    x = np.ones((2, 4), dtype=np.float32)
    http = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    inp = httpclient.InferInput("x", [2, 4], "FP32")
    inp.set_data_from_numpy(x)
    http.infer("m", [inp], model_version="2")
    over_http = http.get_inference_statistics("m", "2")
    assert [(s["name"], s["version"]) for s in over_http["model_stats"]] == [("m", "2")]
    assert over_http["model_stats"][0]["inference_stats"]["success"]["count"] >= 1
    rpc = grpcclient.InferenceServerClient(server.v2_grpc)
    try:
        expected = json_format.ParseDict(over_http, service_pb2.ModelStatisticsResponse())
        assert rpc.get_inference_statistics("m", "2") == expected  # nothing ran in between
        every = rpc.get_inference_statistics()  # no name: every model's versions
        assert [(s.name, s.version) for s in every.model_stats] == [("broken", "1"), ("m", "1"), ("m", "2")]
        with pytest.raises(InferenceServerException, match="model 'nope' not found") as caught:
            rpc.get_inference_statistics("nope")
        assert caught.value.status() == "StatusCode.NOT_FOUND"
    finally:
        rpc.close()
    assert "statistics" in http.get_server_metadata()["extensions"]


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/v2/models/nope/stats", "model 'nope' not found"),
        ("/v2/models/m/versions/9/stats", "version 9 of model 'm' not found"),
        ("/v2/models/m/versions/x/stats", "version must be a positive integer"),
    ],
)
def test_unknown_models_and_versions_have_no_statistics(server: Server, path: str, fragment: str) -> None:
    answer = requests.get(server.url + path, timeout=10)
    assert answer.status_code in (400, 404) and fragment in answer.json()["error"], answer.text


def test_a_models_statistics_are_its_versions(server: Server) -> None:
    assert sorted(stats_of(server, "/v2/models/m/stats")) == [("m", "1"), ("m", "2")]
