"""The route table is known once: the app, the fast lane, the api label and the OpenAPI paths agree."""

from __future__ import annotations

import pytest
from starlette.routing import Route

from service.bento.app import build_app
from service.protocols.openapi import openapi_document
from service.protocols.routes import API_ROUTES, CATCH_ALL, ROUTES, api_of, is_ours, tracing_exclusions


def test_openapi_documents_exactly_the_app_routes() -> None:
    documented = set(openapi_document()["paths"])
    routes = {r.path for r in build_app().routes if isinstance(r, Route) and "{path:path}" not in r.path}
    assert routes <= documented, f"undocumented routes: {sorted(routes - documented)}"
    bento_own = {"/livez", "/readyz", "/metrics"}
    assert documented - routes == bento_own, f"documented but not served: {documented - routes - bento_own}"


def test_app_serves_the_table_in_order() -> None:
    assert [r.path for r in build_app().routes] == [r.path for r in ROUTES]
    assert ROUTES[-len(CATCH_ALL) :] == list(CATCH_ALL.values()), "catch-alls come last"


def _sample(path: str) -> str:
    return (
        path.replace("{model}", "cnn")
        .replace("{version}", "2")
        .replace("{label}", "stable")
        .replace("{file}", "playground.js")
        .replace("{path:path}", "nothing/here")
    )


@pytest.mark.parametrize(("api", "route"), [(api, r) for api, rs in API_ROUTES.items() for r in rs])
def test_every_route_is_ours_with_its_api_label(api: str, route: Route) -> None:
    path = _sample(route.path)
    assert is_ours(path) and api_of(path) == api


@pytest.mark.parametrize(
    ("path", "api"),
    [
        ("/v1/unknown", "native"),
        ("/v2/unknown/x", "v2"),
        ("/v1/models/cnn/versions/1:predict", "tfserving"),
        ("/v1/models", "native"),
        ("/readyz/cnn", "native"),
        ("/v2", "v2"),
        ("/ui", "ui"),
        ("/ui/playground.css", "ui"),
        ("/ui/unknown.txt", "ui"),
    ],
)
def test_api_label_of_sample_paths(path: str, api: str) -> None:
    assert is_ours(path) and api_of(path) == api


@pytest.mark.parametrize(
    "path", ["/livez", "/readyz", "/metrics", "/docs", "/", "/v1", "/v2x", "/readyzz", "/uix", "/u"]
)
def test_bentoml_paths_are_not_ours(path: str) -> None:
    assert not is_ours(path)


def test_tracing_skips_every_route_of_ours() -> None:
    exclusions = tracing_exclusions()
    for route in ROUTES:
        assert any(_sample(route.path).startswith(e) for e in exclusions), route.path
    assert "/metrics" in exclusions and not any("/livez".startswith(e) for e in exclusions)
