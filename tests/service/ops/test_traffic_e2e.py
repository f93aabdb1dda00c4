"""Canary and shadow traffic against a real server (1 worker) over two versions of the quick-trained CNN:
the split's shares follow the stable hash of the sticky key, a key keeps its variant on every protocol, every
answer names version and variant (REST headers, gRPC trailing metadata), the shadow's agreement reaches
/metrics, and ``serving-cli compare`` reports it."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from tritonclient.grpc import service_pb2, service_pb2_grpc

from service.client.cli import main
from service.ops.traffic import bucket
from service.protocols.tfserving.codec import array_to_tensor
from service.protocols.tfserving.protos import tfserving_protos
from tests.server import Server
from tests.service.modelfactory import copy_version

pytestmark = pytest.mark.e2e

VARIANT_OF_VERSION = {1: "stable", 2: "canary"}
CANARY_FROM = 0.75  # traffic {stable: 75, canary: 25}: the hash points from 0.75 on go to canary


def expected_variant(key: str) -> str:
    return "canary" if bucket(key, "cnn") >= CANARY_FROM else "stable"


@pytest.fixture(scope="module")
def server(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("canary-repo")
    for version in (1, 2):  # the same trained model twice: the versions must agree on every row
        copy_version(trained_repo / "cnn" / "1", repo, "cnn", version)
    (repo / "serving.yaml").write_text(
        "models:\n  cnn:\n    policy: all\n    labels: {stable: 1, canary: 2}\n"
        "    traffic: {stable: 75, canary: 25}\n    shadow: {target: canary, percent: 100}\n"
    )
    with Server(repo, tmp_path_factory.mktemp("logs") / "server.log", workers=1) as srv:
        yield srv


@pytest.fixture(scope="module")
def image(server: Server) -> tuple[str, np.ndarray]:
    """The CNN's input name and its metadata's example image."""
    meta = json.loads((server.repo / "cnn" / "1" / "metadata.json").read_text())
    name = meta["inputs"][0]["name"]
    return name, np.asarray(meta["example"][name], np.float32)


def predict(server: Server, body: dict[str, Any], key: str | None, path: str) -> requests.Response:
    headers = {"X-User-Id": key} if key else {}
    answer = requests.post(server.url + path, json=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer


def test_split_sticky_keys_shadow_agreement_and_compare(
    server: Server, image: tuple[str, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    name, x = image
    body = {"model": "cnn", "inputs": x.tolist()}
    served: Counter[str] = Counter()

    def send(key: str | None, path: str = "/v1/predict", payload: dict[str, Any] = body) -> str:
        answer = predict(server, payload, key, path)
        version = int(answer.headers["X-Model-Version"])
        variant = answer.headers["X-Model-Variant"]
        assert VARIANT_OF_VERSION[version] == variant
        if path == "/v1/predict":
            assert answer.json()["version"] == version
        served[variant] += 1
        return variant

    keys = [f"user-{i}" for i in range(200)]
    chosen = [send(key) for key in keys]
    assert chosen == [expected_variant(k) for k in keys]  # the server hashes keys as bucket() does
    assert chosen.count("canary") / len(keys) == pytest.approx(0.25, abs=0.08)
    # one key, one variant: on the native, TF Serving and V2 REST routes alike
    alice = expected_variant("alice")
    tf_body = {"instances": x.tolist()}
    v2_body = {
        "inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
    }
    assert {send("alice") for _ in range(5)} == {alice}
    assert send("alice", "/v1/models/cnn:predict", tf_body) == alice
    assert send("alice", "/v2/models/cnn/infer", v2_body) == alice
    keyless = {send(None) for _ in range(40)}
    assert keyless == {"stable", "canary"}  # weighted random: both (all 40 alike: p < 1e-4)
    named = predict(server, {**body, "version": 1}, "alice", "/v1/predict")
    assert named.headers["X-Model-Version"] == "1" and "X-Model-Variant" not in named.headers

    # every request stable answered (the named one too) was mirrored to canary: run or dropped, and counted
    mirrored = served["stable"] + 1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        runs = server.metric("serving_shadow_requests_total", model="cnn", version="2")
        dropped = server.metric("serving_shadow_dropped_total", model="cnn", version="2")
        if runs + dropped >= mirrored:
            break
        time.sleep(0.2)
    assert runs + dropped == mirrored and runs >= mirrored / 2, (runs, dropped, mirrored)
    agree = server.metric(
        "serving_shadow_agreement_total", model="cnn", primary="1", shadow="2", result="agree"
    )
    assert agree == runs  # one row per request, identical models: every row agrees
    assert server.metric("serving_shadow_agreement_total", model="cnn", result="disagree") == 0
    for variant, version in (("stable", "1"), ("canary", "2")):
        assert (
            server.metric("serving_traffic_requests_total", model="cnn", variant=variant, version=version)
            == (served[variant])
        )

    code = main(
        ["compare", "cnn", "--url", server.url, "--json", "--min-samples", "20", "--max-p99-ratio", "10"]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["champion"] == 1
    rows = {row["version"]: row for row in report["versions"]}
    assert rows[1]["requests"] == served["stable"] + 1 and rows[2]["requests"] == served["canary"]
    assert rows[1]["share"] + rows[2]["share"] == pytest.approx(1.0)
    assert rows[2]["split"] == {"canary": served["canary"]} and rows[2]["shadow_runs"] == runs
    assert (rows[2]["agreement_rows"], rows[2]["agreement"]) == (runs, 1.0)
    assert rows[1]["p50_s"] <= rows[1]["p99_s"] < 10
    verdict = rows[2]["verdict"]
    assert verdict["verdict"] == "as good" and not verdict["failed"]
    assert any(t.startswith("agreement 100.0%") for t in verdict["held"]), verdict
    assert any(t.startswith("p99 ") for t in verdict["held"]), verdict
    assert main(["compare", "cnn", "--url", server.url, "--min-samples", "20", "--max-p99-ratio", "10"]) == 0
    text = capsys.readouterr().out
    assert "champion version 1, since the server started" in text
    assert "verdict: version 2 is as good vs version 1 (agreement 100.0%" in text
    # --window: the difference of two scrapes; nothing was sent in between
    assert main(["compare", "cnn", "--url", server.url, "--json", "--window", "0.3s"]) == 0
    quiet = json.loads(capsys.readouterr().out)
    assert quiet["window_s"] == 0.3 and [r["requests"] for r in quiet["versions"]] == [0, 0]
    assert quiet["versions"][1]["verdict"]["verdict"] == "not enough data"
    assert main(["compare", "nope", "--url", server.url]) == 1
    assert "has no requests of model 'nope'" in capsys.readouterr().err


def test_grpc_answers_name_version_and_variant(server: Server, image: tuple[str, np.ndarray]) -> None:
    name, x = image
    key, variant = "bob", expected_variant("bob")
    version = {v: k for k, v in VARIANT_OF_VERSION.items()}[variant]
    metadata = (("x-user-id", key),)
    pb = tfserving_protos()
    request = pb.predict_pb2.PredictRequest()
    request.model_spec.name = "cnn"
    array_to_tensor(x, request.inputs[name])
    with grpc.insecure_channel(server.tf_grpc) as channel:
        stub = pb.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response, call = stub.Predict.with_call(request, metadata=metadata, timeout=10)
    trailing = dict(call.trailing_metadata())
    assert response.model_spec.version.value == version
    assert (trailing["x-model-version"], trailing["x-model-variant"]) == (str(version), variant)

    infer = service_pb2.ModelInferRequest(model_name="cnn")
    tensor = infer.inputs.add(name=name, datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    with grpc.insecure_channel(server.v2_grpc) as channel:
        v2 = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        answer, call = v2.ModelInfer.with_call(infer, metadata=metadata, timeout=10)
        trailing = dict(call.trailing_metadata())
        assert answer.model_version == str(version)
        assert (trailing["x-model-version"], trailing["x-model-variant"]) == (str(version), variant)
        infer.model_version = "1"  # a named version: not split, no variant
        answer, call = v2.ModelInfer.with_call(infer, metadata=metadata, timeout=10)
    trailing = dict(call.trailing_metadata())
    assert (
        answer.model_version == "1"
        and trailing["x-model-version"] == "1"
        and "x-model-variant" not in trailing
    )
