"""TLS on the HTTP port and both gRPC ports of a real server, with a certificate made by the test (trustme)
and the real clients; tokens travel over it. Plain HTTP and plaintext gRPC to those ports must fail."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from service.protocols.tfserving.protos import tfserving_protos
from tests.server import ROOT, Server
from tests.service.bento.security_helpers import (
    ADMIN,
    INFER,
    X,
    bearer,
    grpc_bearer,
    grpc_metadata,
    tfserving_output,
    tfserving_predict_request,
    write_certificates,
)
from tests.service.modelfactory import write_demo_repo

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(certs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("tls")
    env = {
        "SERVING_TLS_CERTFILE": str(certs["cert"]),
        "SERVING_TLS_KEYFILE": str(certs["key"]),
        "SERVING_INFERENCE_TOKENS": f'["{INFER}"]',
        "SERVING_ADMIN_TOKENS": f'["{ADMIN}"]',
    }
    with Server(write_demo_repo(folder / "repo"), folder / "server.log", ca=certs["ca"], **env) as srv:
        yield srv


def test_requests_over_https_with_the_ca(server: Server, certs: dict[str, Path]) -> None:
    assert server.url.startswith("https://")
    ca = str(certs["ca"])
    answer = requests.post(
        f"{server.url}/v1/predict",
        json={"model": "m", "inputs": X.tolist()},
        headers=bearer(INFER),
        verify=ca,
    )
    assert answer.status_code == 200 and answer.json()["outputs"]["y"] == [[2, 4, 6, 8]]
    assert requests.get(f"{server.url}/livez", verify=ca, timeout=10).status_code == 200
    assert (
        requests.get(f"{server.url}/v1/models", verify=ca, timeout=10).status_code == 401
    )  # tokens still apply
    with pytest.raises(requests.exceptions.SSLError):  # a certificate no system CA signed
        requests.get(f"{server.url}/livez", timeout=10)


def test_plain_http_to_the_tls_port_is_not_served(server: Server) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.url.replace("https://", "http://") + "/livez", timeout=10)


def test_tritonclient_http_with_ssl(server: Server, certs: dict[str, Path]) -> None:
    client = httpclient.InferenceServerClient(
        server.url.removeprefix("https://"),
        ssl=True,
        ssl_options={"ca_certs": str(certs["ca"])},
    )
    inp = httpclient.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(X, binary_data=True)
    np.testing.assert_array_equal(client.infer("m", [inp], headers=bearer(INFER)).as_numpy("y"), X * 2)
    assert client.is_server_live() and client.get_model_metadata("m", headers=bearer(INFER))["name"] == "m"


def test_tritonclient_grpc_with_ssl(server: Server, certs: dict[str, Path]) -> None:
    client = grpcclient.InferenceServerClient(server.v2_grpc, ssl=True, root_certificates=str(certs["ca"]))
    inp = grpcclient.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(X)
    np.testing.assert_array_equal(client.infer("m", [inp], headers=grpc_bearer(INFER)).as_numpy("y"), X * 2)
    assert client.is_server_live()
    with pytest.raises(InferenceServerException) as err:
        client.infer("m", [inp], headers=grpc_bearer(ADMIN))
    assert err.value.status() == "StatusCode.PERMISSION_DENIED"


def test_tfserving_stubs_over_a_secure_channel(server: Server, certs: dict[str, Path]) -> None:
    pb = tfserving_protos()
    credentials = grpc.ssl_channel_credentials(root_certificates=certs["ca"].read_bytes())
    with grpc.secure_channel(server.tf_grpc, credentials) as channel:
        stub = pb.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(tfserving_predict_request(), metadata=grpc_metadata(INFER), timeout=10)
        np.testing.assert_array_equal(tfserving_output(response), X * 2)
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(tfserving_predict_request(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_plaintext_grpc_to_the_tls_ports_fails(server: Server) -> None:
    pb = tfserving_protos()
    for address in (server.tf_grpc, server.v2_grpc):
        with grpc.insecure_channel(address) as channel:
            stub = pb.prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(tfserving_predict_request(), metadata=grpc_metadata(INFER), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, address


def test_container_health_check_speaks_tls(server: Server, certs: dict[str, Path]) -> None:
    env = {**os.environ, "SERVING_PORT": str(server.port), "SERVING_TLS_CERTFILE": str(certs["cert"]),
           "SERVING_TLS_KEYFILE": str(certs["key"])}  # fmt: skip
    check = [sys.executable, "-m", "service.healthcheck"]
    assert subprocess.run(check, cwd=ROOT, env=env, capture_output=True, timeout=60).returncode == 0
    plain = {k: v for k, v in env.items() if not k.startswith("SERVING_TLS_")}  # http:// to a TLS port
    assert subprocess.run(check, cwd=ROOT, env=plain, capture_output=True, timeout=60).returncode == 1
