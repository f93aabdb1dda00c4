"""Compression and wrong methods against a real server: tritonclient's own request and response
compression (gzip and deflate, JSON and binary tensors), large answers compressed for clients that ask
and small ones not, compressed native and TF Serving bodies, the errors of a body that is not what its
``Content-Encoding`` says (the server answering everyone after them), and 405 with ``Allow`` for a route
of ours called with another method."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient

from tests.server import Server
from tests.service.modelfactory import write_demo_repo

pytestmark = pytest.mark.e2e
LIMIT = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("repo")
    write_demo_repo(repo)  # model m: version 1 y = x, version 2 (latest) y = 2x
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with Server(repo, log, SERVING_MAX_BODY_BYTES=str(LIMIT)) as srv:
        yield srv


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("rows", [4, 1000])  # an answer under SERVING_COMPRESS_MIN_BYTES, and one over it
def test_tritonclient_compression_both_ways(server: Server, algorithm: str, binary: bool, rows: int) -> None:
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    inp = httpclient.InferInput("x", [rows, 4], "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    output = httpclient.InferRequestedOutput("y", binary_data=binary)
    result = client.infer(
        "m",
        [inp],
        outputs=[output],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2)


@pytest.mark.parametrize("accept", ["gzip", "deflate"])
def test_a_large_answer_comes_compressed_as_tritonclient_asks(server: Server, accept: str) -> None:
    x = np.arange(4000, dtype=np.float32).reshape(1000, 4)
    body = {"inputs": [{"name": "x", "shape": [1000, 4], "datatype": "FP32", "data": x.ravel().tolist()}]}
    url = server.url + "/v2/models/m/infer"
    plain = requests.post(url, json=body, headers={"Accept-Encoding": "identity"}, timeout=10)
    answer = requests.post(url, json=body, headers={"Accept-Encoding": accept}, timeout=10, stream=True)
    wire = answer.raw.read(decode_content=False)  # the bytes as they came
    assert answer.status_code == plain.status_code == 200
    assert answer.headers["content-encoding"] == accept and answer.headers["vary"] == "accept-encoding"
    assert int(answer.headers["content-length"]) == len(wire) < len(plain.content) // 2
    undo = gzip.decompress if accept == "gzip" else zlib.decompress
    assert json.loads(undo(wire))["outputs"] == plain.json()["outputs"]
    assert "content-encoding" not in plain.headers and plain.headers["vary"] == "accept-encoding"
    np.testing.assert_array_equal(np.reshape(plain.json()["outputs"][0]["data"], (1000, 4)), x * 2)


def test_requests_default_gets_large_native_answers_compressed_and_small_ones_not(server: Server) -> None:
    rows = [[float(i), 1.0, 2.0, 3.0] for i in range(500)]
    large = requests.post(server.url + "/v1/predict", json={"model": "m", "inputs": rows}, timeout=10)
    assert large.request.headers["accept-encoding"].startswith("gzip, deflate")  # requests' own default
    assert large.status_code == 200 and large.headers["content-encoding"] == "gzip"
    assert large.json()["outputs"]["y"] == [[2 * v for v in row] for row in rows]
    small = requests.post(server.url + "/v1/predict", json={"model": "m", "inputs": rows[:1]}, timeout=10)
    assert small.status_code == 200 and small.json()["outputs"]["y"] == [[0.0, 2.0, 4.0, 6.0]]
    assert "content-encoding" not in small.headers and "vary" not in small.headers


def test_compressed_native_and_tfserving_bodies(server: Server) -> None:
    body = json.dumps({"model": "m", "inputs": [[1, 2, 3, 4]]}).encode()
    native = requests.post(server.url + "/v1/predict", data=gzip.compress(body), timeout=10,
                           headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})  # fmt: skip
    assert native.status_code == 200, native.text
    assert native.json()["outputs"]["y"] == [[2.0, 4.0, 6.0, 8.0]]
    tf = requests.post(server.url + "/v1/models/m/versions/1:predict", timeout=10, headers={"Content-Encoding": "deflate"},
                       data=zlib.compress(json.dumps({"instances": [[1, 2, 3, 4]]}).encode()))  # fmt: skip
    assert tf.status_code == 200 and tf.json() == {"predictions": [[1.0, 2.0, 3.0, 4.0]]}, tf.text


@pytest.mark.parametrize(
    ("path", "coding", "data", "status", "fragment"),
    [
        ("/v1/predict", "br", b"{}", 415, "Content-Encoding 'br' is not supported"),
        ("/v2/models/m/infer", "gzip", b'{"inputs": []}', 400, "not valid gzip data"),
        (
            "/v1/predict",
            "gzip",
            gzip.compress(b" " * (LIMIT + 1)),
            413,
            f"more than the limit of {LIMIT} bytes",
        ),
        ("/v1/models/m:predict", "zstd", b"{}", 415, "'zstd' is not supported"),
    ],
)
def test_a_body_that_is_not_what_its_header_says(
    server: Server, path: str, coding: str, data: bytes, status: int, fragment: str
) -> None:
    answer = requests.post(server.url + path, data=data, headers={"Content-Encoding": coding}, timeout=10)
    assert answer.status_code == status and fragment in answer.json()["error"], answer.text
    if path.startswith("/v1/models/"):
        assert set(answer.json()) == {"error"}  # TF Serving's error shape
    after = requests.post(
        server.url + "/v1/predict", json={"model": "m", "inputs": [[1, 1, 1, 1]]}, timeout=10
    )
    assert after.status_code == 200  # the server keeps serving


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/predict", "POST"),
        ("PUT", "/v1/models/m:predict", "POST"),
        ("DELETE", "/v2/models/m/infer", "POST"),
        ("POST", "/v2/models/m/ready", "GET, HEAD"),
        ("POST", "/v1/models", "GET, HEAD"),
    ],
)
def test_a_route_of_ours_with_another_method_is_a_405_with_allow(
    server: Server, method: str, path: str, allow: str
) -> None:
    answer = requests.request(method, server.url + path, timeout=10)
    assert answer.status_code == 405 and answer.headers["allow"] == allow
    assert answer.json() == {"error": f"{path} takes {allow}, not {method}"}


def test_an_unknown_path_stays_a_404(server: Server) -> None:
    answer = requests.get(server.url + "/v1/nowhere", timeout=10)
    assert answer.status_code == 404 and "no route GET /v1/nowhere" in answer.json()["error"]
