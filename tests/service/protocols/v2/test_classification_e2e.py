"""Triton's classification extension against a real server, through tritonclient's ``class_count`` over
HTTP (binary and JSON) and gRPC: the trained MNIST CNN's top classes with its labels, ranked as its
probabilities are; a model without labels; the clear 400s; and the rules on their own."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from service.errors import InvalidInput
from service.protocols.v2.classification import bytes_tensor, classify
from tests.server import Server
from tests.service.modelfactory import write_demo_repo

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = write_demo_repo(tmp_path_factory.mktemp("repo"))  # m: y = 2x, no labels
    shutil.copytree(trained_repo / "cnn", repo / "cnn")
    with Server(repo, tmp_path_factory.mktemp("logs") / "server.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def images(trained_repo: Path) -> np.ndarray:
    example = json.loads((trained_repo / "cnn" / "1" / "metadata.json").read_text())["example"]
    return np.asarray(next(iter(example.values())), dtype=np.float32)[:8]  # real held-out digits


def probabilities(server: Server, images: np.ndarray) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    inp = httpclient.InferInput("pixels", list(images.shape), "FP32")
    inp.set_data_from_numpy(images)
    return client.infer("cnn", [inp]).as_numpy("output_0")


def parsed(top: np.ndarray) -> list[list[tuple[float, int, str]]]:
    """``b"0.998213:7:7"`` entries as (value, index, label) (tritonclient gives JSON BYTES as ``str``)."""
    rows = []
    for row in top:
        entries = [(item.decode() if isinstance(item, bytes) else item).split(":") for item in row]
        rows.append([(float(v), int(i), label) for v, i, label in entries])
    return rows


@pytest.mark.parametrize("transport", ["http-binary", "http-json", "grpc"])
def test_the_cnns_top_classes_with_their_labels(server: Server, images: np.ndarray, transport: str) -> None:
    if transport == "grpc":
        client: object = grpcclient.InferenceServerClient(server.v2_grpc)
        module: object = grpcclient
    else:
        client, module = httpclient.InferenceServerClient(server.url.removeprefix("http://")), httpclient
    inp = module.InferInput("pixels", list(images.shape), "FP32")  # type: ignore[attr-defined]
    inp.set_data_from_numpy(images)
    kwargs = {} if transport == "grpc" else {"binary_data": transport == "http-binary"}
    wanted = module.InferRequestedOutput("output_0", class_count=3, **kwargs)  # type: ignore[attr-defined]
    result = client.infer("cnn", [inp], outputs=[wanted])  # type: ignore[attr-defined]
    top = result.as_numpy("output_0")
    assert top.shape == (len(images), 3) and top.dtype == np.object_
    probs = probabilities(server, images)
    for row, p in zip(parsed(top), probs, strict=True):
        assert [i for _, i, _ in row] == list(np.argsort(-p, kind="stable")[:3])  # ranked as the model ranks
        assert [label for _, i, label in row] == [str(i) for _, i, _ in row]  # the CNN's labels '0'..'9'
        assert [v for v, _, _ in row] == pytest.approx([p[i] for _, i, _ in row], abs=5e-7)


def test_a_model_without_labels_and_more_classes_than_it_has(server: Server) -> None:
    body = {
        "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 4, 2, 3, 0.5, 0.5, 0, 1]}],
        "outputs": [{"name": "y", "parameters": {"classification": 9}}],
    }
    answer = requests.post(server.url + "/v2/models/m/versions/1/infer", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert output["datatype"] == "BYTES" and output["shape"] == [2, 4]  # all four classes, no labels
    assert output["data"] == [
        "4.000000:1", "3.000000:3", "2.000000:2", "1.000000:0",
        "1.000000:3", "0.500000:0", "0.500000:1", "0.000000:2",  # a tie: the lower index first
    ]  # fmt: skip


@pytest.mark.parametrize("count", [0, -1, "3", 2.5, True, None])
def test_a_bad_class_count_is_a_400_and_the_server_serves_on(server: Server, count: object) -> None:
    body = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
        "outputs": [{"name": "y", "parameters": {"classification": count}}],
    }
    answer = requests.post(server.url + "/v2/models/m/infer", json=body, timeout=10)
    assert answer.status_code == 400
    assert "parameters.classification must be an integer >= 1" in answer.json()["error"], answer.text
    client = grpcclient.InferenceServerClient(server.v2_grpc)
    inp = grpcclient.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(np.ones((1, 4), np.float32))
    with pytest.raises(InferenceServerException, match="must be an integer >= 1"):
        client.infer("m", [inp], outputs=[grpcclient.InferRequestedOutput("y", class_count=-2)])
    assert client.infer("m", [inp]).as_numpy("y").tolist() == [[2.0] * 4]


def test_only_batch_by_classes_outputs_classify() -> None:
    with pytest.raises(InvalidInput, match=r"shape \[2, 3, 4\]; classification needs \[batch, classes\]"):
        classify({"y": np.zeros((2, 3, 4), np.float32)}, {"y": 1}, None)
    labels = ["cat", "dog"]
    top = classify({"y": np.array([[0.25, 0.75]], np.float32), "z": np.ones(1)}, {"y": 1}, labels)
    assert top["y"].tolist() == [[b"0.750000:1:dog"]] and top["z"].tolist() == [1.0]
    unnamed = classify({"y": np.array([[0.25, 0.75]], np.float32)}, {"y": 2}, ["only one"])
    assert unnamed["y"].tolist() == [[b"0.750000:1", b"0.250000:0"]]  # labels that do not fit: none


def test_bytes_travel_length_prefixed() -> None:
    array = np.array([[b"ab", b""], [b"xyz", b"q"]], dtype=object)
    assert bytes_tensor(array) == b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x03\x00\x00\x00xyz\x01\x00\x00\x00q"
