"""TF Serving REST and KServe V2 REST against a real server, with plain HTTP and ``tritonclient.http``."""

from __future__ import annotations

import base64
import json
import socket
import struct
from collections.abc import Iterator

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.server import Server
from tests.service.bento.test_discard import Reader, send_in_background
from tests.service.modelfactory import write_demo_repo

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("repo")
    write_demo_repo(repo)
    with Server(repo, tmp_path_factory.mktemp("logs") / "server.log") as srv:
        yield srv


# ----- TF Serving REST ---------------------------------------------------------------------------
def test_tfserving_row_and_columnar_by_version_and_label(server: Server) -> None:
    u = server.url + "/v1/models/m"
    r = requests.post(u + ":predict", json={"instances": [[1, 2, 3, 4], [1, 1, 1, 1]]}, timeout=5)
    assert r.status_code == 200 and r.json() == {"predictions": [[2, 4, 6, 8], [2, 2, 2, 2]]}
    r = requests.post(u + "/versions/1:predict", json={"inputs": [[1, 2, 3, 4]]}, timeout=5)
    assert r.json() == {"outputs": [[1, 2, 3, 4]]}
    r = requests.post(u + "/labels/canary:predict", json={"instances": [{"x": [1, 0, 0, 0]}]}, timeout=5)
    assert r.json() == {"predictions": [[2, 0, 0, 0]]}
    r = requests.post(
        u + "/labels/stable:predict",
        json={"signature_name": "serving_default", "inputs": {"x": [[3, 0, 0, 0]]}},
        timeout=5,
    )
    assert r.json() == {"outputs": [[3, 0, 0, 0]]}


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        (
            ":predict",
            {"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]},
            400,
            "exactly one of 'instances'",
        ),
        (":predict", {"instances": [[1, 2, 3]]}, 400, "expected shape [-1, 4]"),
        (
            ":predict",
            {"instances": [[{"b64": base64.b64encode(b"abcd").decode()}] * 4]},
            400,
            "expected numbers",
        ),
        (
            ":predict",
            {"signature_name": "other", "instances": [[1, 2, 3, 4]]},
            400,
            "signature 'other' not found",
        ),
        ("/versions/9:predict", {"instances": [[1, 2, 3, 4]]}, 404, "version 9"),
        ("/labels/x:predict", {"instances": [[1, 2, 3, 4]]}, 404, "label 'x'"),
    ],
)
def test_tfserving_errors(server: Server, path: str, body: dict, status: int, fragment: str) -> None:
    r = requests.post(server.url + "/v1/models/m" + path, json=body, timeout=5)
    assert r.status_code == status and list(r.json()) == ["error"] and fragment in r.json()["error"]


def test_tfserving_malformed_and_unknown_model(server: Server) -> None:
    r = requests.post(server.url + "/v1/models/m:predict", data=b"{", timeout=5)
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
    r = requests.post(server.url + "/v1/models/zz:predict", json={"instances": [[1, 2, 3, 4]]}, timeout=5)
    assert r.status_code == 404 and "model 'zz' not found" in r.json()["error"]


def test_tfserving_status_and_metadata(server: Server) -> None:
    r = requests.get(server.url + "/v1/models/m", timeout=5).json()
    assert [(s["version"], s["state"]) for s in r["model_version_status"]] == [
        ("1", "AVAILABLE"),
        ("2", "AVAILABLE"),
    ]
    assert r["model_version_status"][0]["status"] == {"error_code": "OK", "error_message": ""}
    r = requests.get(server.url + "/v1/models/m/versions/2", timeout=5).json()
    assert [s["version"] for s in r["model_version_status"]] == ["2"]
    r = requests.get(server.url + "/v1/models/broken", timeout=5).json()
    assert (
        r["model_version_status"][0]["state"] == "END"
        and "artifact corrupt" in r["model_version_status"][0]["status"]["error_message"]
    )
    meta = requests.get(server.url + "/v1/models/m/labels/stable/metadata", timeout=5).json()
    assert meta["model_spec"] == {"name": "m", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["x"]["tensor_shape"]["dim"]] == ["-1", "4"]
    assert requests.get(server.url + "/v1/models/zz", timeout=5).status_code == 404


# ----- KServe V2 REST ----------------------------------------------------------------------------
def test_v2_health_and_metadata_with_tritonclient(server: Server) -> None:
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("m") and client.is_model_ready("m", "1")
    assert not client.is_model_ready("broken")
    meta = client.get_model_metadata("m")
    assert meta["platform"] == "onnx_onnxv1" and meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["parameters"]["execution_provider"] == "CPUExecutionProvider"
    assert client.get_server_metadata()["extensions"][0] == "binary_tensor_data"
    with pytest.raises(InferenceServerException, match="not found"):
        client.get_model_metadata("zz")


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_v2_infer_with_tritonclient(server: Server, binary_in: bool, binary_out: bool) -> None:
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    inp = httpclient.InferInput("x", [2, 4], "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    out = httpclient.InferRequestedOutput("y", binary_data=binary_out)
    result = client.infer("m", [inp], outputs=[out], request_id="req-7")
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2)
    assert result.get_response()["id"] == "req-7" and result.get_response()["model_version"] == "2"
    result = client.infer("m", [inp], model_version="1")  # no outputs named: all, binary
    np.testing.assert_array_equal(result.as_numpy("y"), x)


@pytest.mark.parametrize(
    "datatype",
    [
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
    ],
)
def test_v2_every_numeric_datatype_follows_the_dtype_rule(server: Server, datatype: str) -> None:
    """FP32 and the integer datatypes that convert exactly (INT8/16, UINT8/16) are taken by the FP32 model;
    every other datatype is a 400 naming both dtypes (README, Errors: the dtype rule)."""
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    from tritonclient.utils import InferenceServerException, triton_to_np_dtype

    x = np.array([[1, 0, 1, 1]]).astype(triton_to_np_dtype(datatype))
    for binary in (True, False):
        inp = httpclient.InferInput("x", [1, 4], datatype)
        inp.set_data_from_numpy(x, binary_data=binary)
        if datatype in ("FP32", "INT8", "INT16", "UINT8", "UINT16"):
            result = client.infer("m", [inp], model_version="1")
            np.testing.assert_array_equal(result.as_numpy("y"), x.astype(np.float32))
        else:
            with pytest.raises(InferenceServerException, match="expected float32, got") as err:
                client.infer("m", [inp], model_version="1")
            assert err.value.status() == "400"


@pytest.mark.parametrize(
    ("body", "headers", "status", "fragment"),
    [
        (
            b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}',
            {},
            400,
            "expected shape [-1, 4]",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]}',
            {},
            400,
            "needs 4 values, got 3",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": ["a"]}]}',
            {},
            400,
            "datatype 'BYTES' is not supported",
        ),
        (
            b'{"inputs": [{"name": "q", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
            {},
            400,
            "expected ['x'], got ['q']",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT32", "data": [1.5, 2, 3, 4]}]}',
            {},
            400,
            "needs integers",
        ),
        (b'{"inputs": [', {}, 400, "malformed JSON"),
        (b'{"inputs": []}', {}, 400, "non-empty list"),
    ],
)
def test_v2_errors(server: Server, body: bytes, headers: dict[str, str], status: int, fragment: str) -> None:
    r = requests.post(server.url + "/v2/models/m/infer", data=body, headers=headers, timeout=5)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


def test_v2_binary_request_by_hand_and_unknown_model(server: Server) -> None:
    header = b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]}'
    hdr = {"Inference-Header-Content-Length": str(len(header))}
    r = requests.post(server.url + "/v2/models/m/infer", data=header + b"\0" * 8, headers=hdr, timeout=5)
    assert r.status_code == 400 and "binary_data_size 16 but only 8 bytes follow" in r.json()["error"]
    body = header + struct.pack("<4f", 1, 2, 3, 4)
    r = requests.post(
        server.url + "/v2/models/m/versions/2/infer",
        data=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=5,
    )
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [2, 4, 6, 8]
    r = requests.post(
        server.url + "/v2/models/zz/infer",
        data=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=5,
    )
    assert r.status_code == 404
    r = requests.post(
        server.url + "/v2/models/broken/infer",
        json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
        timeout=5,
    )
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"


def test_a_large_body_refused_at_the_headers_leaves_the_connection_usable(server: Server) -> None:
    """A 2 MB V2 body for an unknown model is answered 404 before it is read (and skipped unparsed, patch
    skip_answered_body); a valid request pipelined right behind it on the same connection is answered."""
    header = b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]}'
    valid = header + struct.pack("<4f", 1, 2, 3, 4)
    big = header + b"\0" * 2_000_000

    def request(model: str, body: bytes) -> bytes:
        head = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
                f"Inference-Header-Content-Length: {len(header)}\r\n\r\n")  # fmt: skip
        return head.encode() + body

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        reader = Reader(sock)
        sender = send_in_background(sock, request("zz", big) + request("m", valid))
        status, body = reader.response()
        assert status == 404 and b"zz" in body, body
        status, body = reader.response()
        assert status == 200, body
        assert json.loads(body)["outputs"][0]["data"] == [2, 4, 6, 8]
        sender.join(10)
