"""BentoML's own clients against the typed ``@bentoml.api`` endpoints of a real server.

One server over the demo repository (model ``m``: version 1 ×1, version 2 ×2 (default), labels
``stable`` → 1 and ``canary`` → 2; model ``broken`` with a corrupt artifact).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import bentoml
import numpy as np
import pytest
import requests
from bentoml.exceptions import BentoMLException

from service.protocols.routes import BENTOML_API, ROUTES, is_ours
from service.service import ModelServer
from tests.server import Server
from tests.service.modelfactory import write_demo_repo

pytestmark = pytest.mark.e2e
X = [[1.0, 2.0, 3.0, 4.0]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("bentoml-clients")
    with Server(write_demo_repo(folder / "repo"), folder / "server.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[bentoml.SyncHTTPClient]:
    with bentoml.SyncHTTPClient(server.url, timeout=30) as sync_client:
        yield sync_client


def test_the_typed_routes_are_bentomls_and_collide_with_none_of_ours() -> None:
    assert {name: api.route for name, api in ModelServer.apis.items()} == BENTOML_API
    our_paths = {route.path for route in ROUTES}
    for path in BENTOML_API.values():
        assert not is_ours(path) and path not in our_paths, path


def test_predict_default_version_version_and_label(client: bentoml.SyncHTTPClient) -> None:
    answer = client.predict(model="m", inputs=X)
    assert answer == {"model": "m", "version": 2, "runtime": "onnx", "outputs": {"y": [[2, 4, 6, 8]]}}
    assert client.predict(model="m", inputs=X, version=1)["outputs"]["y"] == [[1, 2, 3, 4]]
    labelled = client.predict(model="m", inputs=X, label="stable")
    assert labelled["version"] == 1 and labelled["outputs"]["y"] == [[1, 2, 3, 4]]
    assert client.predict(model="m", inputs=X, label="canary")["version"] == 2


def test_predict_takes_nd_arrays_and_selects_outputs(client: bentoml.SyncHTTPClient) -> None:
    batch = np.arange(12, dtype=np.float32).reshape(3, 4)
    answer = client.predict(model="m", inputs=batch, outputs=["y"])
    np.testing.assert_array_equal(np.asarray(answer["outputs"]["y"], np.float32), batch * 2)
    integers = client.predict(model="m", inputs=np.ones((2, 4), np.int64), version=1)
    assert integers["outputs"]["y"] == [[1, 1, 1, 1], [1, 1, 1, 1]]


def test_models_lists_every_model_with_versions_and_labels(client: bentoml.SyncHTTPClient) -> None:
    models = {m["name"]: m for m in client.models()["models"]}
    assert set(models) == {"m", "broken"}
    assert models["m"]["default_version"] == 2 and models["m"]["labels"] == {"stable": 1, "canary": 2}
    assert [(v["version"], v["state"]) for v in models["m"]["versions"]] == [(1, "ready"), (2, "ready")]
    assert models["broken"]["versions"][0]["state"] == "failed"
    assert models["m"]["versions"][0]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 4]}]


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"model": "nope", "inputs": X}, 404, "model 'nope' not found; available models: ['broken', 'm']"),
        ({"model": "m", "inputs": X, "version": 7}, 404, "version 7 of model 'm' not found"),
        ({"model": "m", "inputs": X, "label": "gone"}, 404, "label 'gone'"),
        (
            {"model": "m", "inputs": X, "version": 1, "label": "stable"},
            400,
            "give either 'version' or 'label'",
        ),
        ({"model": "m", "inputs": [[1.0, 2.0]]}, 400, "input 'x': expected shape [-1, 4]"),
        ({"model": "m", "inputs": [[True, False, True, False]]}, 400, "expected numbers, got booleans"),
        ({"model": "m", "inputs": X, "outputs": ["z"]}, 400, "unknown output(s) ['z']"),
        ({"model": "broken", "inputs": X}, 503, "broken"),
    ],
)
def test_errors_are_our_status_and_message(
    client: bentoml.SyncHTTPClient, server: Server, kwargs: dict[str, object], status: int, message: str
) -> None:
    with pytest.raises(BentoMLException) as raised:
        client.predict(**kwargs)
    assert raised.value.error_code.value == status and message in str(raised.value)
    raw = requests.post(server.url + BENTOML_API["predict"], json=kwargs, timeout=10)
    assert raw.status_code == status and message in raw.json()["error"], raw.text
    if status == 503:
        assert raw.headers["retry-after"].isdigit()


def test_wrong_types_are_a_400_from_bentomls_validation(server: Server) -> None:
    for body in [{"model": "m"}, {"model": "m", "inputs": X, "version": 0}, {"model": 3, "inputs": X}]:
        raw = requests.post(server.url + BENTOML_API["predict"], json=body, timeout=10)
        assert raw.status_code == 400 and "validation error" in raw.json()["error"], (body, raw.text)


def test_async_client_concurrent_predictions(server: Server) -> None:
    async def run() -> list[dict[str, object]]:
        async with bentoml.AsyncHTTPClient(server.url, timeout=30) as client:
            calls = [client.predict(model="m", inputs=[[float(i)] * 4], version=1) for i in range(8)]
            listed = await client.models()
            assert {m["name"] for m in listed["models"]} == {"m", "broken"}
            return list(await asyncio.gather(*calls))

    answers = asyncio.run(run())
    assert [a["outputs"]["y"] for a in answers] == [[[float(i)] * 4] for i in range(8)]


def test_predictions_are_counted_under_their_own_protocol(
    client: bentoml.SyncHTTPClient, server: Server
) -> None:
    before = server.metric("serving_requests_total", model="m", protocol="bentoml", code="200")
    client.predict(model="m", inputs=X)
    after = server.metric("serving_requests_total", model="m", protocol="bentoml", code="200")
    assert after == before + 1
