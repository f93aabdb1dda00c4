"""``runtime: openvino`` and ``precision`` through a real server: one ``bentoml serve`` over copies of the
quick-trained CNN (and linear model), each copy served with another runtime and precision from
``serving.yaml``; the same digits go to each, and the answers are held against ONNX Runtime's."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import requests

from service.runtimes.openvino import cpu_has_bf16
from tests.server import Server
from tests.service.runtimes.test_openvino import TOLERANCE, assert_same_answers

pytestmark = pytest.mark.e2e

SERVED = {  # model name in the repository -> (source model, serving.yaml entry)
    "cnn": ("cnn", "{}"),
    "cnn-ort-int8": ("cnn", "{precision: int8}"),
    "cnn-ov": ("cnn", "{runtime: openvino}"),
    "cnn-ov-int8": ("cnn", "{runtime: openvino, precision: int8}"),
    "cnn-ov-bf16": ("cnn", "{runtime: openvino, precision: bf16}"),
    "linear-int8": ("linear", "{precision: int8}"),
}
BF16_HERE = cpu_has_bf16(ov.Core())


@pytest.fixture(scope="module")
def server(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("precision-repo")
    for name, (source, _) in SERVED.items():
        shutil.copytree(trained_repo / source / "1", repo / name / "1")
    entries = "".join(f"  {name}: {entry}\n" for name, (_, entry) in SERVED.items())
    (repo / "serving.yaml").write_text("models:\n" + entries)
    with Server(repo, tmp_path_factory.mktemp("logs") / "server.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    from training.data import load_mnist

    return load_mnist(limit_train=1, limit_test=64).x_test


def predict(server: Server, model: str, x: np.ndarray) -> np.ndarray:
    r = requests.post(server.url + "/v1/predict", json={"model": model, "inputs": x.tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["runtime"] == ("openvino" if "-ov" in model else "onnx")
    return np.asarray(r.json()["outputs"]["output_0"], np.float32)


@pytest.mark.parametrize(
    ("model", "reference", "precision"),
    [("cnn-ov", "cnn", "fp32"), ("cnn-ov-int8", "cnn-ort-int8", "int8"), ("cnn-ov-bf16", "cnn", "fp32")],
)
def test_openvino_answers_the_same_classes_as_onnx_runtime(
    server: Server, digits: np.ndarray, model: str, reference: str, precision: str
) -> None:
    expected = predict(server, reference, digits)
    tolerance = 0.05 if model == "cnn-ov-bf16" and BF16_HERE else TOLERANCE[precision]
    assert_same_answers(expected, predict(server, model, digits), tolerance)


def test_int8_answers_differ_from_fp32_a_little(server: Server, digits: np.ndarray) -> None:
    fp32, int8 = predict(server, "cnn", digits), predict(server, "cnn-ort-int8", digits)
    assert 0 < float(np.max(np.abs(fp32 - int8))) < 0.2


def test_status_metadata_and_metrics_report_runtime_and_precision(server: Server) -> None:
    models = {m["name"]: m for m in requests.get(server.url + "/v1/models", timeout=5).json()["models"]}
    provider = {name: m["versions"][0]["provider"] for name, m in models.items()}
    assert provider == {
        "cnn": "CPUExecutionProvider",
        "cnn-ort-int8": "CPUExecutionProvider int8",
        "cnn-ov": "OpenVINO CPU",
        "cnn-ov-int8": "OpenVINO CPU int8",
        "cnn-ov-bf16": "OpenVINO CPU bf16" if BF16_HERE else "OpenVINO CPU",  # the precision really in use
        "linear-int8": None,
    }
    v2 = requests.get(server.url + "/v2/models/cnn-ov-int8", timeout=5).json()
    assert v2["platform"] == "openvino_onnx" and v2["parameters"]["execution_provider"] == "OpenVINO CPU int8"
    for name in ("cnn-ov-int8", "cnn-ort-int8", "cnn"):
        info = server.metric("serving_model_info", model=name, provider=provider[name])
        assert info == server.workers, f"{name}: one series per worker"
    assert server.metric("serving_model_info", model="cnn-ov-int8", runtime="openvino") == server.workers


def test_a_missing_variant_fails_only_that_version_and_says_why(server: Server) -> None:
    version = requests.get(server.url + "/v1/models", timeout=5).json()["models"]
    linear = next(m for m in version if m["name"] == "linear-int8")["versions"][0]
    assert linear["state"] == "failed"
    assert linear["error"].startswith("model linear version 1 has no int8 variant: the exporter left it out")
    r = requests.post(server.url + "/v1/predict", json={"model": "linear-int8", "inputs": [[1.0]]}, timeout=5)
    assert r.status_code == 503, r.text


def test_bf16_without_cpu_support_is_logged(server: Server) -> None:
    log = server.log_path.read_text(errors="replace")
    warning = "model cnn version 1: precision bf16 asked for, but this CPU has no bf16"
    assert (warning in log) is not BF16_HERE, "a warning exactly where the CPU lacks bf16"
