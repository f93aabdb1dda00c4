"""The images of ``deploy/Dockerfile``, really built and run (podman, host network, loopback only).

The serving image has no TensorFlow and fits in 1.2 GB: it serves a mounted repository of really trained
models over REST and both gRPC APIs (TF Serving's on the extracted protobuf modules) with the onnx and
keras runtimes as a non-root user, refuses the tensorflow runtime with a message naming what to install,
imports no TensorFlow, tf2onnx or training module, and stops cleanly on SIGTERM. The training image runs
the command the Kubernetes Job uses. The lint of the Dockerfiles and the compose file's validation run
without podman.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
import tritonclient.grpc as v2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from deploy.tfprotos import REFUSAL
from service.runtimes.tensorflow import TENSORFLOW_MISSING
from service.settings import Settings
from tests.deploy.podman import ROOT, Podman, image_size
from tests.server import free_port, metric_sum
from tests.service.protocols.test_grpc_protocols_e2e import predict_request

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.timeout(1800)  # the first test pays for the image build (~3 min, network-bound)
SERVING_IMAGE_BUDGET = 1_200_000_000  # bytes (1.2 GB), base image included
DOCKERFILES = [ROOT / "deploy" / "Dockerfile", ROOT / "tests" / "deploy" / "prometheus.Dockerfile"]
# Run in the serving image: every module of the service imported, the TF Serving stubs loaded, and then
# what was imported. TensorFlow's protobuf modules (tensorflow.core..._pb2) are allowed, TensorFlow is not.
IMPORT_CHECK = """
import importlib, importlib.metadata, json, pkgutil, sys
import service, service.service
for info in pkgutil.walk_packages(service.__path__, "service."):
    importlib.import_module(info.name)
from service.protocols.tfserving.protos import tfserving_protos
tfserving_protos()
try:
    importlib.metadata.distribution("tensorflow")
    installed = True
except importlib.metadata.PackageNotFoundError:
    installed = False
try:
    import tensorflow
    refusal = None
except ImportError as exc:
    refusal = str(exc)
print(json.dumps({"modules": sorted(sys.modules), "installed": installed, "refusal": refusal}))
"""


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    result = subprocess.run([str(BIN / "hadolint"), str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_file_is_valid_and_mounts_the_repository_read_only() -> None:
    compose = [str(BIN / "docker-compose"), "-f", str(ROOT / "docker-compose.yml")]
    assert subprocess.run([*compose, "config", "-q"], capture_output=True).returncode == 0
    rendered = subprocess.run(
        [*compose, "config", "--format", "json"], capture_output=True, text=True, check=True
    )
    serving = json.loads(rendered.stdout)["services"]["serving"]
    (models,) = [v for v in serving["volumes"] if v["target"] == "/app/models"]
    assert models["read_only"] and Path(models["source"]) == ROOT / "models"
    assert {p["target"] for p in serving["ports"]} == {3000, 8500, 8001}


class Container:
    def __init__(self, podman: Podman, name: str) -> None:
        self.podman, self.name = podman, name
        self.port, self.tf_grpc, self.v2_grpc = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        result = self.podman("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-4000:]


WORKERS = Settings.model_fields["workers"].default
"""The image runs the default number of workers (no SERVING_WORKERS in its environment)."""


@pytest.fixture(scope="module")
def container(podman: Podman, image: str, readable_repo: Path) -> Iterator[Container]:
    box = Container(podman, f"keras-serving-test-{free_port()}")
    podman(
        "run", "-d", "--name", box.name, "-v", f"{readable_repo}:/app/models:ro",
        "-e", "SERVING_HOST=127.0.0.1", "-e", "SERVING_GRPC_HOST=127.0.0.1",  # loopback only (host network)
        "-e", f"SERVING_PORT={box.port}", "-e", f"SERVING_GRPC_TFSERVING_PORT={box.tf_grpc}",
        "-e", f"SERVING_GRPC_V2_PORT={box.v2_grpc}", image,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:  # /readyz is one worker's answer: wait until every worker has loaded the repository
                ready = requests.get(box.url + "/readyz", timeout=1).status_code == 200
                if ready and metric_sum(box.url, "serving_worker_ready") >= WORKERS:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError(f"container not ready in 90 s:\n{box.logs()}")
        yield box
    finally:
        podman("rm", "--force", box.name, check=False)


@pytest.mark.e2e
def test_the_container_serves_rest_and_both_grpc_apis(container: Container) -> None:
    answer = requests.post(
        container.url + "/v1/predict", json={"model": "linear", "inputs": [[5.0]]}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert abs(answer.json()["outputs"]["output_0"][0][0] - 10.0) < 0.5
    client = v2.InferenceServerClient(f"127.0.0.1:{container.v2_grpc}")
    assert client.is_server_ready() and client.get_model_metadata("cnn").name == "cnn"
    with grpc.insecure_channel(f"127.0.0.1:{container.tf_grpc}") as channel:
        request = predict_request("linear", np.array([[5.0]], np.float32))
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    assert abs(tf.make_ndarray(reply.outputs["output_0"])[0, 0] - 10.0) < 0.5
    metrics = requests.get(container.url + "/metrics", timeout=10).text
    assert 'serving_requests_total{code="200"' in metrics


@pytest.mark.e2e
def test_the_keras_runtime_serves_and_the_tensorflow_runtime_is_refused(container: Container) -> None:
    answer = requests.post(
        container.url + "/v1/predict", json={"model": "linear_keras", "inputs": [[5.0]]}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert (
        answer.json()["runtime"] == "keras" and abs(answer.json()["outputs"]["output_0"][0][0] - 10.0) < 0.5
    )
    models = {m["name"]: m for m in requests.get(container.url + "/v1/models", timeout=10).json()["models"]}
    (version,) = models["linear_tf"]["versions"]
    assert version["state"] == "failed" and version["error"] == TENSORFLOW_MISSING, version
    assert "pip install 'keras-serving[tensorflow]'" in version["error"]
    refused = requests.post(
        container.url + "/v1/predict", json={"model": "linear_tf", "inputs": [[5.0]]}, timeout=10
    )
    assert refused.status_code == 503, refused.text


@pytest.mark.e2e
def test_the_serving_image_has_no_tensorflow_and_imports_none(podman: Podman, image: str) -> None:
    result = podman("run", "--rm", image, "python3", "-c", IMPORT_CHECK, timeout=120)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert not found["installed"], "the tensorflow distribution is installed in the serving image"
    assert found["refusal"] == REFUSAL and "pip install 'keras-serving[tensorflow]'" in REFUSAL
    modules = found["modules"]
    assert "service.service" in modules and "tensorflow_serving.apis.predict_pb2" in modules  # it did run
    assert "tensorflow" not in modules
    tf_modules = [m for m in modules if m.startswith("tensorflow.")]
    protos = [m for m in tf_modules if m.endswith("_pb2")]
    assert protos and all(m in protos or any(p.startswith(m + ".") for p in protos) for m in tf_modules)
    assert not [m for m in modules if m.split(".")[0] in {"tf2onnx", "training", "tf_keras", "onnx"}]


@pytest.mark.e2e
def test_the_serving_image_fits_the_size_budget(podman: Podman, image: str, training_image: str) -> None:
    serving, training = image_size(podman, image), image_size(podman, training_image)
    print(f"image sizes: serving {serving / 1e9:.2f} GB, training {training / 1e9:.2f} GB")
    assert serving <= SERVING_IMAGE_BUDGET, f"serving image {serving / 1e9:.2f} GB > 1.2 GB"
    assert training > serving + 500_000_000  # TensorFlow (and only the training image) has it


@pytest.mark.e2e
def test_the_health_check_command_follows_the_configured_port(podman: Podman, container: Container) -> None:
    healthy = podman(
        "exec", "-e", f"SERVING_PORT={container.port}", container.name, "python3", "-m", "service.healthcheck"
    )
    assert healthy.returncode == 0
    unhealthy = podman("exec", "-e", f"SERVING_PORT={free_port()}", container.name,
                       "python3", "-m", "service.healthcheck", check=False)  # fmt: skip
    assert unhealthy.returncode == 1 and "readyz" in unhealthy.stderr


@pytest.mark.e2e
def test_the_container_runs_as_the_unprivileged_user(podman: Podman, container: Container) -> None:
    assert podman("exec", container.name, "id", "-u").stdout.strip() == "10001"
    denied = podman("exec", container.name, "touch", "/app/models/x", check=False)
    assert denied.returncode != 0  # the repository is mounted read-only


@pytest.mark.e2e
def test_the_training_job_command_runs_in_the_training_image(
    podman: Podman, training_image: str, tmp_path: Path
) -> None:
    repo = tmp_path / "models"
    repo.mkdir()
    repo.chmod(0o777)  # the image's user (10001) writes here
    result = podman(
        "run", "--rm", "-v", f"{repo}:/app/models", training_image,
        "train-models", "train", "--quick", "--models", "linear", "--repo", "/app/models", timeout=600,
    )  # fmt: skip
    assert (repo / "linear" / "1" / "model.onnx").is_file(), result.stdout + result.stderr
    assert (repo / "linear" / "1" / "metadata.json").is_file()


@pytest.mark.e2e
def test_sigterm_stops_the_container_cleanly(podman: Podman, image: str, readable_repo: Path) -> None:
    box = Container(podman, f"keras-serving-stop-{free_port()}")
    podman(
        "run", "-d", "--name", box.name, "-v", f"{readable_repo}:/app/models:ro", "-e", "SERVING_HOST=127.0.0.1",
        "-e", f"SERVING_PORT={box.port}", "-e", "SERVING_GRPC_TFSERVING_PORT=0", "-e", "SERVING_GRPC_V2_PORT=0",
        "-e", "SERVING_DRAIN_S=2", image,
    )  # fmt: skip
    try:
        time.sleep(3)
        started = time.monotonic()
        podman("stop", "--time", "20", box.name)
        assert time.monotonic() - started < 15, "the server did not stop on SIGTERM before the kill deadline"
        state = podman("inspect", "--format", "{{.State.ExitCode}}", box.name).stdout.strip()
        assert state in {"0", "143"}, f"exit code {state}:\n{box.logs()}"  # 143 = exited on SIGTERM
    finally:
        podman("rm", "--force", box.name, check=False)
