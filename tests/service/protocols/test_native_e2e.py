"""End to end against a real ``bentoml serve`` process: every native route and every error case."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import pytest
import requests

from tests.server import Server
from tests.service.modelfactory import write_demo_repo, write_scale_version

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("repo")
    write_demo_repo(repo, broken="missing", extra_policy="    max_wait_ms: 20\n    max_batch_size: 32\n")
    write_scale_version(repo, "loose", 1, 1.0, declared_width=-1)
    with Server(repo, tmp_path_factory.mktemp("logs") / "server.log", SERVING_MAX_BODY_BYTES="4096") as srv:
        yield srv


def post(server: Server, body: object | bytes, **kw: object) -> requests.Response:
    if isinstance(body, bytes):
        return requests.post(server.url + "/v1/predict", data=body, timeout=10, **kw)  # type: ignore[arg-type]
    return requests.post(server.url + "/v1/predict", json=body, timeout=10, **kw)  # type: ignore[arg-type]


def test_predict_default_version_label_and_named_inputs(server: Server) -> None:
    r = post(server, {"model": "m", "inputs": [[1, 2, 3, 4]]})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "model": "m",
        "version": 2,
        "runtime": "onnx",
        "outputs": {"y": [[2.0, 4.0, 6.0, 8.0]]},
    }
    r = post(server, {"model": "m", "label": "stable", "inputs": {"x": [[1, 2, 3, 4], [0, 0, 0, 1]]}})
    assert r.status_code == 200 and r.json()["version"] == 1
    assert r.json()["outputs"]["y"] == [[1, 2, 3, 4], [0, 0, 0, 1]]
    r = post(server, {"model": "m", "version": 1, "inputs": [[1, 1, 1, 1]], "outputs": ["y"]})
    assert r.status_code == 200 and r.json()["outputs"]["y"] == [[1, 1, 1, 1]]


def test_health_list_readiness_and_openapi(server: Server) -> None:
    assert requests.get(server.url + "/livez", timeout=5).status_code == 200
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 200
    models = {m["name"]: m for m in requests.get(server.url + "/v1/models", timeout=5).json()["models"]}
    assert set(models) == {"m", "loose", "broken"}
    assert models["m"]["default_version"] == 2 and models["m"]["labels"] == {"stable": 1, "canary": 2}
    v2 = models["m"]["versions"][1]
    assert v2["state"] == "ready" and v2["provider"] == "CPUExecutionProvider"
    assert v2["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 4]}]
    assert models["broken"]["versions"][0]["state"] == "failed"
    assert "artifact missing: model.onnx" in models["broken"]["versions"][0]["error"]
    assert requests.get(server.url + "/readyz/m", timeout=5).json()["ready"] is True
    r = requests.get(server.url + "/readyz/broken", timeout=5)
    assert (
        r.status_code == 503 and r.headers["Retry-After"] == "1" and "artifact missing" in r.json()["reason"]
    )
    assert requests.get(server.url + "/readyz/none", timeout=5).status_code == 404
    spec = requests.get(server.url + "/v1/openapi.json", timeout=5).json()
    assert spec["openapi"].startswith("3.") and "/v1/predict" in spec["paths"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{oops", 400, "malformed JSON"),
        (b"", 400, "empty request body"),
        ({"inputs": [[1, 2, 3, 4]]}, 400, "field 'model'"),
        ({"model": "m"}, 400, "field 'inputs' is required"),
        (
            {"model": "m", "inputs": [[1, 2, 3]]},
            400,
            "expected shape [-1, 4] (first dimension = batch), got [1, 3]",
        ),
        ({"model": "m", "inputs": [["a", "b", "c", "d"]]}, 400, "expected numbers, got strings"),
        ({"model": "m", "inputs": [[True, False, True, False]]}, 400, "got booleans"),
        ({"model": "m", "inputs": []}, 400, "got [0]"),
        ({"model": "m", "version": 0, "inputs": [[1, 2, 3, 4]]}, 400, "positive integer"),
        ({"model": "m", "inputs": [[1, 2, 3, 4]], "outputs": ["nope"]}, 400, "unknown output"),
        ({"model": "zzz", "inputs": [[1, 2, 3, 4]]}, 404, "model 'zzz' not found"),
        ({"model": "m", "version": 7, "inputs": [[1, 2, 3, 4]]}, 404, "version 7 of model 'm' not found"),
        ({"model": "m", "label": "beta", "inputs": [[1, 2, 3, 4]]}, 404, "label 'beta'"),
        ({"model": "broken", "inputs": [[1, 2, 3, 4]]}, 503, "no ready version"),
        ({"model": "m", "inputs": [[0.5] * 4] * 400}, 413, "limit is 4096 bytes"),
    ],
)
def test_errors_have_status_and_one_json_shape(
    server: Server, body: object, status: int, fragment: str
) -> None:
    r = post(server, body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert fragment in r.json()["error"]
    if status == 503:
        assert r.headers["Retry-After"] == "1"
    assert post(server, {"model": "m", "inputs": [[1, 1, 1, 1]]}).status_code == 200  # still serving


def test_runtime_failure_is_500_without_internals(server: Server) -> None:
    r = post(server, {"model": "loose", "inputs": [[1, 2, 3, 4, 5]]})
    assert r.status_code == 500
    assert r.json() == {"error": "internal error; see the server log"}
    assert post(server, {"model": "loose", "inputs": [[1, 2, 3, 4]]}).status_code == 200


def test_unknown_route_is_json_404(server: Server) -> None:
    r = requests.get(server.url + "/v1/does/not/exist", timeout=5)
    assert r.status_code == 404 and "no route GET /v1/does/not/exist" in r.json()["error"]


def test_concurrent_requests_are_batched(server: Server) -> None:
    before_sum = server.metric("serving_batch_size_sum", model="m", version="2")
    before_count = server.metric("serving_batch_size_count", model="m", version="2")

    def one(i: int) -> float:
        r = post(server, {"model": "m", "inputs": [[i, 0, 0, 0]]})
        assert r.status_code == 200
        return r.json()["outputs"]["y"][0][0]

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(256)))
    assert results == [2.0 * i for i in range(256)]
    rows = server.metric("serving_batch_size_sum", model="m", version="2") - before_sum
    batches = server.metric("serving_batch_size_count", model="m", version="2") - before_count
    assert rows == 256
    assert batches < rows, f"{rows} rows in {batches} batches: nothing was merged"
