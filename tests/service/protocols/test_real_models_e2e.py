"""Really trained models through every protocol and runtime of a real server.

* The same input gives bit-identical outputs through the native API, TF Serving REST (row and
  columnar) and gRPC, and KServe V2 REST (JSON and binary) and gRPC — for each model.
* The ONNX, TensorFlow and Keras-on-JAX runtimes agree within 1e-5 on the same input.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.conftest import TRAINED_MODELS
from tests.server import Server

pytestmark = pytest.mark.e2e
RUNTIMES = ("tensorflow", "keras")


@pytest.fixture(scope="module")
def server(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("repo")
    lines = ["models:"]
    for name in TRAINED_MODELS:
        shutil.copytree(trained_repo / name, repo / name)
        for runtime in RUNTIMES:
            shutil.copytree(trained_repo / name, repo / f"{name}-{runtime}")
            lines += [f"  {name}-{runtime}:", f"    runtime: {runtime}"]
    (repo / "serving.yaml").write_text("\n".join(lines) + "\n")
    logs = tmp_path_factory.mktemp("logs") / "server.log"
    with Server(repo, logs, workers=1, start_timeout=180, KERAS_BACKEND="jax") as srv:
        yield srv


def signature(name: str, repo_server: Server) -> tuple[str, list[int], list[str]]:
    meta = requests.get(repo_server.url + f"/v2/models/{name}", timeout=10).json()
    assert len(meta["inputs"]) == 1, meta
    return meta["inputs"][0]["name"], meta["inputs"][0]["shape"], [o["name"] for o in meta["outputs"]]


def batch_for(shape: list[int], rows: int = 3) -> np.ndarray:
    rng = np.random.default_rng(7)
    full = [rows, *shape[1:]]
    scale = 255.0 if len(full) == 4 else 3.0
    return (rng.random(full) * scale).astype(np.float32)


def through_every_protocol(server: Server, model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """Output (first output) for the same input through each protocol, as float32 arrays."""
    name, _, outputs = signature(model, server)
    out = outputs[0]
    got: dict[str, np.ndarray] = {}
    body = {"model": model, "inputs": {name: x.tolist()}}
    got["native"] = np.asarray(
        requests.post(server.url + "/v1/predict", json=body, timeout=30).json()["outputs"][out], np.float32
    )
    r = requests.post(
        server.url + f"/v1/models/{model}:predict", json={"instances": x.tolist()}, timeout=30
    ).json()
    got["tfserving_rest_row"] = np.asarray(r["predictions"], np.float32)
    r = requests.post(
        server.url + f"/v1/models/{model}:predict", json={"inputs": {name: x.tolist()}}, timeout=30
    ).json()
    got["tfserving_rest_columnar"] = np.asarray(r["outputs"], np.float32)
    http = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    for binary in (False, True):
        inp = httpclient.InferInput(name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        res = http.infer(model, [inp], outputs=[httpclient.InferRequestedOutput(out, binary_data=binary)])
        got[f"v2_rest_{'binary' if binary else 'json'}"] = res.as_numpy(out)
    g = grpcclient.InferenceServerClient(server.v2_grpc)
    inp = grpcclient.InferInput(name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    got["v2_grpc"] = g.infer(model, [inp]).as_numpy(out)
    with grpc.insecure_channel(server.tf_grpc) as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.inputs[name].CopyFrom(tf.make_tensor_proto(x))
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        got["tfserving_grpc"] = tf.make_ndarray(response.outputs[out])
    return got


@pytest.mark.parametrize("model", TRAINED_MODELS)
def test_every_protocol_gives_bit_identical_outputs(server: Server, model: str) -> None:
    _, shape, _ = signature(model, server)
    x = batch_for(shape)
    got = through_every_protocol(server, model, x)
    reference = got["native"]
    assert reference.shape[0] == 3 and np.isfinite(reference).all()
    for protocol, value in got.items():
        assert value.dtype == np.float32, protocol
        assert value.shape == reference.shape, protocol
        assert value.tobytes() == reference.tobytes(), (
            f"{protocol} differs from native: {np.abs(value - reference).max()}"
        )


@pytest.mark.parametrize("model", TRAINED_MODELS)
def test_onnx_tensorflow_and_keras_runtimes_agree(server: Server, model: str) -> None:
    name, shape, outputs = signature(model, server)
    x = batch_for(shape, rows=5)
    results = {}
    for target in (model, *(f"{model}-{r}" for r in RUNTIMES)):
        r = requests.post(
            server.url + "/v1/predict", json={"model": target, "inputs": {name: x.tolist()}}, timeout=60
        )
        assert r.status_code == 200, r.text
        results[r.json()["runtime"]] = np.asarray(r.json()["outputs"][outputs[0]], np.float32)
    assert set(results) == {"onnx", "tensorflow", "keras"}
    for runtime in RUNTIMES:
        diff = float(np.abs(results[runtime] - results["onnx"]).max())
        assert diff <= 1e-5, f"{model}: {runtime} vs onnx max abs diff {diff}"
    meta = requests.get(server.url + f"/v2/models/{model}-keras", timeout=10).json()
    assert meta["platform"] == "keras_jax" and meta["parameters"]["execution_provider"].startswith(
        ("TFRT_CPU", "cpu", "CPU")
    )
    assert (
        requests.get(server.url + f"/v2/models/{model}-tensorflow", timeout=10).json()["platform"]
        == "tensorflow_savedmodel"
    )


def test_trained_example_in_metadata_is_servable(server: Server, trained_repo: Path) -> None:
    for model in TRAINED_MODELS:
        meta = json.loads((trained_repo / model / "1" / "metadata.json").read_text())
        r = requests.post(
            server.url + "/v1/predict", json={"model": model, "inputs": meta["example"]}, timeout=30
        )
        assert r.status_code == 200, r.text
