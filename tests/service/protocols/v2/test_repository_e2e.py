"""Triton's model configuration and repository extensions against a real server, through tritonclient
over HTTP and gRPC: the configuration of a model as its settings and signature make it, the same on
both transports; the repository index with every version's state (a broken model's reason included);
explicit load and unload refused with what to do instead, the server serving after each."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from service.limits import DEFAULT_LIMITS
from service.protocols.v2.repository import refuse_control
from tests.server import Server
from tests.service.modelfactory import write_demo_repo

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = write_demo_repo(tmp_path_factory.mktemp("repo"), extra_policy="    max_batch_size: 24\n")
    log = tmp_path_factory.mktemp("logs") / "server.log"
    settings = {"SERVING_MAX_WAIT_MS": "1.5", "SERVING_MAX_QUEUE_ROWS": "512", "SERVING_MAX_QUEUE_DELAY_MS": "80",
                "SERVING_POLL_INTERVAL_S": "3"}  # fmt: skip
    with Server(repo, log, **settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: Server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.url.removeprefix("http://"))


@pytest.fixture(scope="module")
def rpc(server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(server.v2_grpc)
    yield client
    client.close()


def test_the_configuration_is_the_models_settings_and_signature(
    http: httpclient.InferenceServerClient,
) -> None:
    config = http.get_model_config("m")
    assert config["name"] == "m" and config["platform"] == "onnx_onnxv1" and config["backend"] == "onnx"
    assert config["max_batch_size"] == 24  # serving.yaml's, over the server's default
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}]  # no batch dimension
    assert config["output"] == [{"name": "y", "data_type": "TYPE_FP32", "dims": [4]}]
    assert config["version_policy"] == {"all": {}}
    assert config["dynamic_batching"] == {
        "max_queue_delay_microseconds": 1500,
        "default_queue_policy": {
            "timeout_action": "REJECT",
            "default_timeout_microseconds": 80000,
            "max_queue_size": 512,
        },
    }
    parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
    assert parameters["max_queue_rows"] == "512" and parameters["runtime"] == "onnx"
    assert parameters["execution_provider"] == "CPUExecutionProvider" and parameters["state"] == "ready"
    assert http.get_model_config("m", "1")["input"] == config["input"]
    assert "model_configuration" in http.get_server_metadata()["extensions"]


def test_grpc_gives_the_same_configuration(
    http: httpclient.InferenceServerClient, rpc: grpcclient.InferenceServerClient
) -> None:
    over_http = json_format.ParseDict(http.get_model_config("m"), model_config_pb2.ModelConfig())
    assert rpc.get_model_config("m").config == over_http
    assert rpc.get_model_config("m", "2").config.max_batch_size == 24


@pytest.mark.parametrize(
    ("model", "version", "fragment"),
    [("nope", "", "model 'nope' not found"), ("m", "9", "version 9 of model 'm' not found")],
)
def test_an_unknown_model_or_version_has_no_configuration(
    server: Server, rpc: grpcclient.InferenceServerClient, model: str, version: str, fragment: str
) -> None:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/config"
    answer = requests.get(server.url + path, timeout=10)
    assert answer.status_code == 404 and fragment in answer.json()["error"]
    with pytest.raises(InferenceServerException, match=fragment) as caught:
        rpc.get_model_config(model, version)
    assert caught.value.status() == "StatusCode.NOT_FOUND"


def test_the_index_lists_every_version_with_its_state(
    http: httpclient.InferenceServerClient, rpc: grpcclient.InferenceServerClient
) -> None:
    index = http.get_model_repository_index()
    by_version = {(e["name"], e["version"]): e for e in index}
    assert sorted(by_version) == [("broken", "1"), ("m", "1"), ("m", "2")]
    assert by_version["m", "1"] == {"name": "m", "version": "1", "state": "READY"}
    broken = by_version["broken", "1"]
    assert broken["state"] == "UNAVAILABLE" and "model.onnx" in broken["reason"], broken
    over_grpc = json_format.MessageToDict(rpc.get_model_repository_index(), preserving_proto_field_name=True)
    assert over_grpc["models"] == index


def test_the_index_of_ready_versions(server: Server, rpc: grpcclient.InferenceServerClient) -> None:
    answer = requests.post(server.url + "/v2/repository/index", json={"ready": True}, timeout=10)
    assert answer.status_code == 200
    assert [(e["name"], e["version"]) for e in answer.json()] == [("m", "1"), ("m", "2")]
    ready = rpc._client_stub.RepositoryIndex(grpcclient.service_pb2.RepositoryIndexRequest(ready=True))
    assert [(m.name, m.version) for m in ready.models] == [("m", "1"), ("m", "2")]


@pytest.mark.parametrize("body", [b"[1]", b'{"ready": "yes"}', b"{"])
def test_a_malformed_index_request_is_a_400(server: Server, body: bytes) -> None:
    answer = requests.post(server.url + "/v2/repository/index", data=body, timeout=10)
    assert answer.status_code == 400, answer.text
    assert "ready" in answer.json()["error"] or "JSON" in answer.json()["error"]


@pytest.mark.parametrize("action", ["load", "unload"])
def test_explicit_load_and_unload_are_refused_with_what_to_do(
    server: Server, http: httpclient.InferenceServerClient, rpc: grpcclient.InferenceServerClient, action: str
) -> None:
    answer = requests.post(f"{server.url}/v2/repository/models/m/{action}", timeout=10)
    assert answer.status_code == 409, answer.text
    message = answer.json()["error"]
    assert f"explicit model {action} is not enabled" in message and "<repository>/m/<version>/" in message
    assert "every 3 s (SERVING_POLL_INTERVAL_S)" in message
    with pytest.raises(InferenceServerException, match=f"explicit model {action} is not enabled"):
        getattr(http, f"{action}_model")("m")
    with pytest.raises(InferenceServerException, match=f"explicit model {action} is not enabled") as caught:
        getattr(rpc, f"{action}_model")("m")
    assert caught.value.status() == str(grpc.StatusCode.FAILED_PRECONDITION)
    x = np.ones((1, 4), dtype=np.float32)
    inp = httpclient.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(x)
    np.testing.assert_array_equal(http.infer("m", [inp]).as_numpy("y"), x * 2)  # still serving, unchanged


def test_without_polling_the_refusal_says_to_restart() -> None:
    class NoPolling:
        poll_interval_s = 0.0
        limits = DEFAULT_LIMITS

    error = refuse_control(NoPolling(), "load", "cnn")  # type: ignore[arg-type]  # only the interval and limits are read
    assert error.http_status == 409 and error.grpc_code == "FAILED_PRECONDITION"
    assert "<repository>/cnn/<version>/" in error.message and "restart the server" in error.message
