"""The one document behind ``/docs.json``: ours with BentoML's routes merged in (in process)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from service.bento.app import bentoml_document, build_app
from service.dataplane import DataPlane
from service.models.registry import ModelRegistry
from service.protocols.docs import ASSETS, merge_documents
from service.protocols.openapi import openapi_document
from service.protocols.routes import DOCS_ROUTES, ROUTES, is_ours
from service.settings import Settings

THEIRS: dict[str, Any] = {
    "openapi": "3.0.2",
    "tags": [{"name": "Service APIs"}],
    "paths": {
        "/predict": {"post": {"operationId": "svc__predict"}},
        "/livez": {"get": {"summary": "BentoML's own"}},
    },
    "components": {"schemas": {"Error": {"type": "string"}, "PredictOut": {"type": "object"}}},
}


def test_merge_adds_their_paths_schemas_and_tags_and_keeps_ours() -> None:
    ours = openapi_document()
    before_ours, before_theirs = copy.deepcopy(ours), copy.deepcopy(THEIRS)
    merged = merge_documents(ours, THEIRS)
    assert merged["openapi"] == "3.1.0"
    assert merged["paths"]["/predict"] == {"post": {"operationId": "svc__predict"}}
    assert merged["paths"]["/livez"] == ours["paths"]["/livez"]  # ours wins where both describe a path
    assert merged["components"]["schemas"]["Error"] == ours["components"]["schemas"]["Error"]
    assert merged["components"]["schemas"]["PredictOut"] == {"type": "object"}
    assert merged["tags"] == [{"name": "Service APIs"}]
    assert set(merged["paths"]) == set(ours["paths"]) | {"/predict"}
    assert ours == before_ours and before_theirs == THEIRS  # neither input is changed


def test_every_route_of_ours_is_in_the_document() -> None:
    documented = set(openapi_document()["paths"])
    for route in ROUTES:
        if "{path:path}" not in route.path:
            assert route.path in documented, route.path


def test_docs_routes_are_bentomls_side_of_the_fast_lane() -> None:
    for route in DOCS_ROUTES:
        assert not is_ours(route.path.replace("{file}", "swagger-ui.css")), route.path


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    """Our app over an empty repository (no BentoML service in this process)."""
    return TestClient(build_app(DataPlane(ModelRegistry(Settings(repository=tmp_path, poll_interval_s=0)))))


def test_outside_a_bentoml_worker_the_document_is_ours(client: TestClient) -> None:
    assert bentoml_document() == {}
    answer = client.get("/docs.json")
    assert answer.status_code == 200
    assert set(answer.json()["paths"]) == set(openapi_document()["paths"])


def test_the_page_and_its_files(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "docs/swagger-ui-bundle.js" in page.text
    for name, media_type in ASSETS.items():
        answer = client.get(f"/docs/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"] == media_type, name
    missing = client.get("/docs/swagger-initializer.js")  # Swagger UI's own (the Petstore's) is not served
    assert missing.status_code == 404 and "under /docs" in missing.json()["error"]
