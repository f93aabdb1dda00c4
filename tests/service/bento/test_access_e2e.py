"""Bearer tokens and CORS on real servers, every protocol, with the fast lane on and off.

Two servers, each shared by the module's tests: ``lane`` (default fast lane; tokens from the settings
and from a token file; health and /metrics open) and ``bentoml-stack`` (``SERVING_FAST_LANE=false``, so
every request goes through BentoML's middleware; tokens only as hashes in a file; health and /metrics
protected). Both allow the CORS origin ``https://ok.example``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from service.protocols.tfserving.protos import tfserving_protos
from tests.server import Server
from tests.service.bento.security_helpers import (
    ADMIN,
    FILE_BOTH,
    FILE_INFER,
    INFER,
    WRONG,
    X,
    bearer,
    grpc_bearer,
    grpc_metadata,
    tfserving_output,
    tfserving_predict_request,
    write_token_file,
)
from tests.service.modelfactory import write_demo_repo

pytestmark = pytest.mark.e2e
OK_ORIGIN = "https://ok.example"
HEALTH = ["/livez", "/readyz", "/readyz/m", "/v2/health/live", "/v2/health/ready"]
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
# (method, path, JSON body, what a right answer holds) for every REST protocol's inference and metadata routes
REST_CALLS: list[tuple[str, str, Any, Any]] = [
    (
        "POST",
        "/v1/predict",
        {"model": "m", "inputs": X.tolist()},
        lambda a: a["outputs"]["y"] == [[2, 4, 6, 8]],
    ),
    ("GET", "/v1/models", None, lambda a: {m["name"] for m in a["models"]} == {"m", "broken"}),
    ("POST", "/v1/models/m:predict", {"instances": X.tolist()}, lambda a: a["predictions"] == [[2, 4, 6, 8]]),
    ("GET", "/v1/models/m", None, lambda a: len(a["model_version_status"]) == 2),
    ("GET", "/v1/models/m/metadata", None, lambda a: "signature_def" in a["metadata"]),
    ("POST", "/v2/models/m/infer", V2_BODY, lambda a: a["outputs"][0]["data"] == [2, 4, 6, 8]),
    ("GET", "/v2", None, lambda a: "extensions" in a),
    ("GET", "/v2/models/m", None, lambda a: a["versions"] == ["1", "2"]),
    ("GET", "/v2/models/m/ready", None, lambda a: True),
]
CALL_IDS = [f"{method} {path}" for method, path, _, _ in REST_CALLS]


@pytest.fixture(scope="module", params=["lane", "bentoml-stack"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp(request.param)
    repo = write_demo_repo(folder / "repo")
    lane = request.param == "lane"
    env = {"SERVING_CORS_ORIGINS": f'["{OK_ORIGIN}"]'}
    if lane:
        env["SERVING_INFERENCE_TOKENS"] = f'["{INFER}"]'
        env["SERVING_ADMIN_TOKENS"] = f'["{ADMIN}"]'
        grants = {FILE_INFER: "inference", FILE_BOTH: "inference,admin"}
    else:
        env.update(SERVING_FAST_LANE="false", SERVING_PROTECT_HEALTH="true", SERVING_PROTECT_METRICS="true")
        grants = {INFER: "inference", ADMIN: "admin", FILE_INFER: "inference", FILE_BOTH: "admin,inference"}
    env["SERVING_TOKEN_FILE"] = str(write_token_file(folder / "tokens", grants))
    with Server(repo, folder / "server.log", token=None if lane else ADMIN, **env) as srv:
        srv.protected = not lane  # type: ignore[attr-defined]
        yield srv


def call(
    server: Server, method: str, path: str, body: Any, token: str | None, **headers: str
) -> requests.Response:
    return requests.request(
        method, server.url + path, json=body, headers={**bearer(token), **headers}, timeout=10
    )


@pytest.mark.parametrize(("method", "path", "body", "right"), REST_CALLS, ids=CALL_IDS)
def test_rest_routes_need_an_inference_token(
    server: Server, method: str, path: str, body: Any, right: Any
) -> None:
    missing = call(server, method, path, body, None)
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"] == 'Bearer realm="keras-serving", scope="inference"'
    assert missing.json() == {"error": f"{method} {path} needs a bearer token with the 'inference' scope "
                              "(Authorization: Bearer <token>)"}  # fmt: skip
    wrong = call(server, method, path, body, WRONG)
    assert wrong.status_code == 401 and wrong.json() == {"error": "the bearer token is not valid"}
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    other = call(server, method, path, body, ADMIN)
    assert other.status_code == 403 and 'error="insufficient_scope"' in other.headers["www-authenticate"]
    assert other.json() == {
        "error": f"the token does not grant the 'inference' scope that {method} {path} needs"
    }
    for token in (INFER, FILE_INFER, FILE_BOTH):
        answer = call(server, method, path, body, token)
        assert answer.status_code == 200, (token, answer.text)
        assert right(answer.json()), answer.text


def test_health_and_metrics_open_or_protected(server: Server) -> None:
    for path in [*HEALTH, "/metrics"]:
        if not server.protected:  # type: ignore[attr-defined]
            assert call(server, "GET", path, None, None).status_code == 200, path
            assert call(server, "GET", path, None, WRONG).status_code == 200, path  # open: a token is ignored
            continue
        missing = call(server, "GET", path, None, None)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer"), path
        assert 'scope="admin"' in missing.headers["www-authenticate"] and "error" in missing.json()
        assert call(server, "GET", path, None, INFER).status_code == 403, path
        assert call(server, "GET", path, None, ADMIN).status_code == 200, path
        assert call(server, "GET", path, None, FILE_BOTH).status_code == 200, path


def test_bentoml_docs_need_the_admin_scope(server: Server) -> None:
    assert call(server, "GET", "/docs.json", None, None).status_code == 401
    assert call(server, "GET", "/docs.json", None, INFER).status_code == 403
    answer = call(server, "GET", "/docs.json", None, FILE_BOTH)
    assert answer.status_code == 200 and "openapi" in answer.json()


def test_tritonclient_http_sends_the_token(server: Server) -> None:
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    inp = httpclient.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(X, binary_data=True)
    np.testing.assert_array_equal(client.infer("m", [inp], headers=bearer(INFER)).as_numpy("y"), X * 2)
    with pytest.raises(InferenceServerException, match="needs a bearer token"):
        client.infer("m", [inp])
    with pytest.raises(InferenceServerException, match="does not grant the 'inference' scope"):
        client.get_model_metadata("m", headers=bearer(ADMIN))


def test_cors_for_allowed_and_refused_origins(server: Server) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    for path in ("/v1/predict", "/v1/models/m:predict", "/v2/models/m/infer"):
        allowed = call(server, "OPTIONS", path, None, None, Origin=OK_ORIGIN, **preflight)
        assert allowed.status_code == 204 and allowed.headers["access-control-allow-origin"] == OK_ORIGIN
        assert "Authorization" in allowed.headers["access-control-allow-headers"]
        refused = call(server, "OPTIONS", path, None, None, Origin="https://evil.example", **preflight)
        assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
        assert "https://evil.example" in refused.json()["error"]
    answer = call(server, "POST", "/v1/predict", REST_CALLS[0][2], INFER, Origin=OK_ORIGIN)
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == OK_ORIGIN
    unseen = call(server, "POST", "/v1/predict", REST_CALLS[0][2], INFER, Origin="https://evil.example")
    assert unseen.status_code == 200 and "access-control-allow-origin" not in unseen.headers


def test_tfserving_grpc_tokens(server: Server) -> None:
    pb = tfserving_protos()
    with grpc.insecure_channel(server.tf_grpc) as channel:
        stub = pb.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        status = pb.model_service_pb2_grpc.ModelServiceStub(channel)
        status_request = pb.get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "m"
        for token, code, fragment in [
            (None, grpc.StatusCode.UNAUTHENTICATED, "needs a bearer token with the 'inference' scope"),
            (WRONG, grpc.StatusCode.UNAUTHENTICATED, "the bearer token is not valid"),
            (ADMIN, grpc.StatusCode.PERMISSION_DENIED, "does not grant the 'inference' scope"),
        ]:
            for method, request in (
                (stub.Predict, tfserving_predict_request()),
                (status.GetModelStatus, status_request),
            ):
                with pytest.raises(grpc.RpcError) as err:
                    method(request, metadata=grpc_metadata(token), timeout=10)
                assert err.value.code() == code and fragment in err.value.details(), token
        for token in (INFER, FILE_INFER, FILE_BOTH):
            response = stub.Predict(tfserving_predict_request(), metadata=grpc_metadata(token), timeout=10)
            np.testing.assert_array_equal(tfserving_output(response), X * 2)
            assert (
                len(
                    status.GetModelStatus(
                        status_request, metadata=grpc_metadata(token), timeout=10
                    ).model_version_status
                )
                == 2
            )


def test_v2_grpc_tokens(server: Server) -> None:
    client = grpcclient.InferenceServerClient(server.v2_grpc)
    inp = grpcclient.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(X)
    for token, status in [
        (None, "UNAUTHENTICATED"),
        (WRONG, "UNAUTHENTICATED"),
        (ADMIN, "PERMISSION_DENIED"),
    ]:
        for do in (
            lambda h: client.infer("m", [inp], headers=h),
            lambda h: client.get_model_metadata("m", headers=h),
        ):
            with pytest.raises(InferenceServerException) as err:
                do(grpc_bearer(token))
            assert err.value.status() == f"StatusCode.{status}", token
    for token in (INFER, FILE_INFER, FILE_BOTH):
        np.testing.assert_array_equal(
            client.infer("m", [inp], headers=grpc_bearer(token)).as_numpy("y"), X * 2
        )
        assert client.is_model_ready("m", headers=grpc_bearer(token))
    # health calls: open on the first server, admin only where health is protected
    if not server.protected:  # type: ignore[attr-defined]
        assert client.is_server_live() and client.is_server_ready()
        return
    for token, status in [(None, "UNAUTHENTICATED"), (INFER, "PERMISSION_DENIED")]:
        with pytest.raises(InferenceServerException) as err:
            client.is_server_live(headers=grpc_bearer(token))
        assert err.value.status() == f"StatusCode.{status}"
    assert client.is_server_live(headers=grpc_bearer(ADMIN)) and client.is_server_ready(
        headers=grpc_bearer(FILE_BOTH)
    )


def test_log_settings_need_the_admin_scope(server: Server) -> None:
    """Triton's logging extension changes every worker's log: REST and gRPC ask for the admin scope."""
    http = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    rpc = grpcclient.InferenceServerClient(server.v2_grpc)
    for read, auth in ((http.get_log_settings, bearer), (rpc.get_log_settings, grpc_bearer)):
        with pytest.raises(InferenceServerException, match="needs a bearer token with the 'admin' scope"):
            read()
        with pytest.raises(InferenceServerException, match="does not grant the 'admin' scope"):
            read(headers=auth(FILE_INFER))
    assert http.get_log_settings(headers=bearer(FILE_BOTH))["log_error"] is True
    unchanged = {"log_error": True}  # the module's other tests share this server
    assert http.update_log_settings(unchanged, headers=bearer(FILE_BOTH))["log_error"] is True
    answer = rpc.update_log_settings(unchanged, headers=grpc_bearer(FILE_BOTH), as_json=True)
    assert answer["settings"]["log_error"] == {"bool_param": True}
    with pytest.raises(InferenceServerException, match="does not grant the 'admin' scope"):
        rpc.update_log_settings(unchanged, headers=grpc_bearer(FILE_INFER))
