"""``GET /docs`` (Swagger UI served by us) over one OpenAPI document of every route, on a real server
with access control on: the docs need the ``admin`` scope, the typed BentoML API the ``inference`` one."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import requests

from service.protocols.routes import BENTOML_API, ROUTES
from tests.server import Server
from tests.service.bento.security_helpers import ADMIN, INFER, X, bearer
from tests.service.modelfactory import write_demo_repo

pytestmark = pytest.mark.e2e
BENTOML_INFRA = {"/livez", "/healthz", "/readyz", "/metrics"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("docs")
    env = {"SERVING_INFERENCE_TOKENS": f'["{INFER}"]', "SERVING_ADMIN_TOKENS": f'["{ADMIN}"]'}
    with Server(write_demo_repo(folder / "repo"), folder / "server.log", **env) as srv:
        yield srv


def get(server: Server, path: str, token: str | None = ADMIN) -> requests.Response:
    return requests.get(server.url + path, headers=bearer(token), timeout=10)


def test_docs_page_references_local_assets_that_answer(server: Server) -> None:
    page = get(server, "/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    referenced = re.findall(r'(?:href|src)="([^"]+)"', page.text)
    assert referenced and all(ref.startswith("docs/") for ref in referenced), referenced  # nothing external
    assert {"docs/swagger-ui-bundle.js", "docs/swagger-ui.css", "docs/init.js"} <= set(referenced)
    for ref in referenced:
        asset = get(server, "/" + ref)
        assert asset.status_code == 200 and len(asset.content) > 20, ref
    assert "SwaggerUIBundle" in get(server, "/docs/swagger-ui-bundle.js").text
    assert 'url: "docs.json"' in get(server, "/docs/init.js").text
    missing = get(server, "/docs/../../etc/passwd")
    assert missing.status_code == 404
    assert get(server, "/docs/index.html").json()["error"].startswith("no file 'index.html' under /docs")


def test_one_document_lists_every_route(server: Server) -> None:
    document = get(server, "/docs.json").json()
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    ours = {route.path for route in ROUTES if "{path:path}" not in route.path}
    assert ours <= set(paths), sorted(ours - set(paths))
    assert set(BENTOML_API.values()) | BENTOML_INFRA <= set(paths), sorted(paths)
    predict = paths[BENTOML_API["predict"]]["post"]
    assert predict["operationId"] == "keras-serving__predict"
    schema = predict["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert {"model", "inputs", "version", "label", "outputs"} <= set(schema["properties"])
    refs = set(re.findall(r'"\$ref": ?"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs and refs <= set(document["components"]["schemas"]), refs  # every reference resolves
    native = get(server, "/v1/openapi.json", INFER).json()  # the protocols' own document, merged not copied
    assert paths["/v1/predict"] == native["paths"]["/v1/predict"]
    assert set(paths) == set(native["paths"]) | set(BENTOML_API.values()) | BENTOML_INFRA


def test_docs_need_the_admin_scope(server: Server) -> None:
    for path in ["/docs", "/docs/swagger-ui.css", "/docs.json"]:
        missing = get(server, path, None)
        assert missing.status_code == 401 and 'scope="admin"' in missing.headers["www-authenticate"], path
        assert get(server, path, INFER).status_code == 403, path


def test_typed_api_needs_the_inference_scope(server: Server) -> None:
    body = {"model": "m", "inputs": X.tolist()}
    url = server.url + BENTOML_API["predict"]
    assert requests.post(url, json=body, timeout=10).status_code == 401
    assert requests.post(url, json=body, headers=bearer(ADMIN), timeout=10).status_code == 403
    answer = requests.post(url, json=body, headers=bearer(INFER), timeout=10)
    assert answer.status_code == 200 and answer.json()["outputs"]["y"] == [[2, 4, 6, 8]]
    listed = requests.post(server.url + BENTOML_API["models"], headers=bearer(INFER), timeout=10)
    assert listed.status_code == 200 and {m["name"] for m in listed.json()["models"]} == {"m", "broken"}


def test_swagger_ui_renders_every_api_in_a_browser(server: Server) -> None:
    """Debian's Chromium (as the playground's test drives it) shows the operations of all four APIs."""
    from playwright.sync_api import expect, sync_playwright

    from tests.service.protocols.test_ui_e2e import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(extra_http_headers=bearer(ADMIN)).new_page()
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.goto(server.url + "/docs")
            expect(page.locator(".opblock").first).to_be_visible(timeout=20_000)
            shown = set(page.locator(".opblock-summary-path").all_inner_texts())
        finally:
            browser.close()
    shown = {path.replace("\u200b", "") for path in shown}
    assert {
        "/v1/predict",
        "/v1/models/{model}:predict",
        "/v2/models/{model}/infer",
        "/predict",
        "/models",
    } <= shown
    assert not failed, failed
