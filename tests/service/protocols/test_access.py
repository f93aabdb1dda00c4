"""Access control and CORS in-process: the scope table, the token file, the HTTP gate and the settings.

The real servers (every protocol, both gRPC servers, the fast lane on and off, TLS) are in
``tests/service/bento/test_security_e2e.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from service.bento.security import access_policy, gated, tls_config
from service.errors import Forbidden, Unauthenticated
from service.protocols.access import AccessPolicy, digest, read_token_file
from service.protocols.gate import Gate
from service.settings import Settings

INFER, ADMIN, BOTH = "inference-token-aaaaaaaa", "admin-token-bbbbbbbbbbbb", "both-scopes-cccccccccccc"
GRANTS = [
    (digest(INFER), frozenset({"inference"})),
    (digest(ADMIN), frozenset({"admin"})),
    (digest(BOTH), frozenset({"inference", "admin"})),
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("path", "open_scope", "protected_scope"),
    [
        ("/v1/predict", "inference", "inference"),
        ("/v1/models", "inference", "inference"),
        ("/v1/models/m/versions/2:predict", "inference", "inference"),
        ("/v1/models/m/metadata", "inference", "inference"),
        ("/v1/openapi.json", "inference", "inference"),
        ("/v1/anything-unknown", "inference", "inference"),
        ("/v2", "inference", "inference"),
        ("/v2/models/m/ready", "inference", "inference"),
        ("/v2/models/m/versions/1/infer", "inference", "inference"),
        ("/v2/logging", "admin", "admin"),  # changes every worker's log settings
        ("/livez", None, "admin"),
        ("/healthz", None, "admin"),
        ("/readyz", None, "admin"),
        ("/readyz/m", None, "admin"),
        ("/v2/health/live", None, "admin"),
        ("/v2/health/ready", None, "admin"),
        ("/metrics", None, "admin"),
        ("/ui", None, None),
        ("/ui/playground.js", None, None),
        ("/docs.json", "admin", "admin"),
        ("/", "admin", "admin"),
    ],
)
def test_scope_of_every_kind_of_route(path: str, open_scope: str | None, protected_scope: str | None) -> None:
    assert AccessPolicy(GRANTS).http_scope(path) == open_scope
    assert AccessPolicy(GRANTS, protect_health=True, protect_metrics=True).http_scope(path) == protected_scope


def test_grpc_scopes() -> None:
    policy, protected = AccessPolicy(GRANTS), AccessPolicy(GRANTS, protect_health=True)
    for method in (
        "/tensorflow.serving.PredictionService/Predict",
        "/tensorflow.serving.PredictionService/GetModelMetadata",
        "/tensorflow.serving.ModelService/GetModelStatus",
        "/inference.GRPCInferenceService/ModelInfer",
        "/inference.GRPCInferenceService/ModelReady",
        "/inference.GRPCInferenceService/ServerMetadata",
    ):
        assert policy.grpc_scope(method) == protected.grpc_scope(method) == "inference"
    for method in (
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/ServerReady",
    ):
        assert policy.grpc_scope(method) is None and protected.grpc_scope(method) == "admin"
    assert policy.grpc_scope("/inference.GRPCInferenceService/LogSettings") == "admin"


def test_check_answers_401_and_403_with_bearer_challenges() -> None:
    policy = AccessPolicy(GRANTS)
    policy.check(f"Bearer {INFER}", "inference", "x")
    policy.check(f"bearer  {BOTH} ", "admin", "x")  # scheme case-insensitive, spaces tolerated
    cases: list[tuple[str | None, type, str]] = [
        (None, Unauthenticated, 'scope="inference"'),
        ("Basic dXNlcjpwYXNz", Unauthenticated, 'error="invalid_request"'),
        ("Bearer ", Unauthenticated, 'error="invalid_request"'),
        ("Bearer not-a-known-token-xxxx", Unauthenticated, 'error="invalid_token"'),
        (f"Bearer {ADMIN}", Forbidden, 'error="insufficient_scope", scope="inference"'),
    ]
    for header, error, challenge in cases:
        with pytest.raises(error) as raised:
            policy.check(header, "inference", "POST /v1/predict")
        assert raised.value.headers()["WWW-Authenticate"].startswith('Bearer realm="keras-serving"')
        assert challenge in raised.value.headers()["WWW-Authenticate"]
    assert policy.scopes_of("unknown") == frozenset() and policy.scopes_of(BOTH) == {"inference", "admin"}


def test_token_file_holds_hashes_and_refuses_malformed_lines(tmp_path: Path) -> None:
    hexed = hashlib.sha256(BOTH.encode()).hexdigest()
    good = tmp_path / "tokens"
    good.write_text(f"# ops team\n\nsha256:{hexed} inference,admin  # both\nsha256:{'0' * 64} admin\n")
    assert read_token_file(good) == [
        (digest(BOTH), frozenset({"inference", "admin"})),
        (bytes(32), {"admin"}),
    ]
    for line, fragment in [
        (f"{hexed} admin", "expected 'sha256:<hex digest>"),
        (f"sha256:{hexed}", "expected 'sha256:<hex digest>"),
        (f"sha256:{hexed[:-2]} admin", "64 hexadecimal digits"),
        (f"sha256:{'z' * 64} admin", "64 hexadecimal digits"),
        (f"sha256:{hexed} root", "unknown scope ['root']"),
    ]:
        bad = tmp_path / "bad"
        bad.write_text(f"# first line\n{line}\n")
        with pytest.raises(ValueError, match=r"bad:2: ") as raised:
            read_token_file(bad)
        assert fragment in str(raised.value)


def test_policy_from_settings(tmp_path: Path) -> None:
    assert access_policy(Settings()) is None
    tokens = tmp_path / "tokens"
    tokens.write_text(f"sha256:{hashlib.sha256(ADMIN.encode()).hexdigest()} admin\n")
    policy = access_policy(Settings(inference_tokens=[INFER], token_file=tokens, protect_metrics=True))
    assert (
        policy is not None
        and policy.scopes_of(INFER) == {"inference"}
        and policy.scopes_of(ADMIN) == {"admin"}
    )
    assert policy.http_scope("/metrics") == "admin" and policy.http_scope("/livez") is None
    with pytest.raises(ValueError, match="need tokens"):
        access_policy(Settings(protect_health=True))
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(admin_tokens=["short"])
    with pytest.raises(ValidationError, match="go together"):
        Settings(tls_certfile=tmp_path / "cert.pem")
    assert tls_config(Settings()) == {}
    ssl = tls_config(Settings(tls_certfile=Path("c.pem"), tls_keyfile=Path("k.pem")))["ssl"]
    assert ssl["enabled"] and ssl["certfile"].endswith("c.pem") and ssl["keyfile"].endswith("k.pem")


def test_no_gate_at_all_when_access_control_and_cors_are_off() -> None:
    app = Starlette()
    assert gated(app, None, Settings()) is app
    assert isinstance(gated(app, None, Settings(cors_origins=["https://a.example"])), Gate)


# ---- the HTTP gate in front of a small app ------------------------------------------------------------


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def client(policy: AccessPolicy | None, origins: list[str]) -> TestClient:
    inner = Starlette(routes=[Route(p, hello, methods=["GET", "POST"]) for p in ("/v1/models", "/metrics")])
    return TestClient(Gate(inner, policy, origins))


def test_gate_answers_in_the_one_error_shape() -> None:
    http = client(AccessPolicy(GRANTS), [])
    answer = http.get("/v1/models")
    assert answer.status_code == 401 and answer.headers["content-type"] == "application/json"
    assert orjson.loads(answer.content) == {
        "error": "GET /v1/models needs a bearer token with the 'inference' scope (Authorization: Bearer <token>)"
    }
    assert answer.headers["www-authenticate"] == 'Bearer realm="keras-serving", scope="inference"'
    answer = http.get("/v1/models", headers=bearer(ADMIN))
    assert answer.status_code == 403 and "'inference' scope" in answer.json()["error"]
    assert http.get("/v1/models", headers=bearer(INFER)).text == "hello"
    assert http.get("/metrics").text == "hello"  # open unless protected


def test_cors_allowed_and_refused_origins() -> None:
    http = client(AccessPolicy(GRANTS), ["https://ok.example"])
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    answer = http.options("/v1/models", headers={"Origin": "https://ok.example", **preflight})
    assert answer.status_code == 204 and answer.content == b""  # before the token check: no token needed
    assert answer.headers["access-control-allow-origin"] == "https://ok.example"
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert "Authorization" in answer.headers["access-control-allow-headers"]
    assert answer.headers["vary"] == "Origin"
    refused = http.options("/v1/models", headers={"Origin": "https://evil.example", **preflight})
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    assert refused.json() == {
        "error": "origin 'https://evil.example' may not call this server (see SERVING_CORS_ORIGINS)"
    }
    ok = http.get("/v1/models", headers={"Origin": "https://ok.example", **bearer(INFER)})
    assert ok.text == "hello" and ok.headers["access-control-allow-origin"] == "https://ok.example"
    assert "Retry-After" in ok.headers["access-control-expose-headers"]
    denied = http.get("/v1/models", headers={"Origin": "https://ok.example"})  # a 401 the page can read
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "https://ok.example"
    other = http.get("/v1/models", headers={"Origin": "https://evil.example", **bearer(INFER)})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in http.get("/metrics").headers  # not a CORS request


def test_cors_off_by_default_and_any_origin_with_a_star() -> None:
    preflight = {"Origin": "https://a.example", "Access-Control-Request-Method": "POST"}
    off = client(None, []).options("/v1/models", headers=preflight)
    assert off.status_code == 405 and "access-control-allow-origin" not in off.headers  # the app's own answer
    star = client(None, ["*"])
    assert (
        star.options("/v1/models", headers=preflight).headers["access-control-allow-origin"]
        == "https://a.example"
    )
    assert star.post("/v1/models", headers={"Origin": "https://b.example"}).headers[
        "access-control-allow-origin"
    ]
