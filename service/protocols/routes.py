"""The route table of every REST protocol, known once.

:data:`API_ROUTES` groups the routes by API (``native``, ``tfserving``, ``v2``, and ``ui`` for the playground
page and its files); the ASGI app, the fast lane's choice of which paths are ours, the ``api`` label of the
HTTP metrics and the tracing exclusions all derive from it, and a test holds the OpenAPI document against it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.errors import NotFound
from service.protocols import native, ui
from service.protocols.http import dataplane_of, error_response, json_response
from service.protocols.openapi import openapi_document
from service.protocols.openapi_schemas import catalog_of
from service.protocols.tfserving import rest as tfserving_rest
from service.protocols.v2 import rest as v2_rest

ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


async def openapi(request: Request) -> Response:
    dataplane = dataplane_of(request)
    return json_response(openapi_document(catalog_of(dataplane), dataplane.limits))


async def not_found(request: Request) -> Response:
    """Unknown routes under our prefixes answer in the one JSON error shape."""
    return error_response(NotFound(f"no route {request.method} {request.url.path}; see /v1/openapi.json"))


API_ROUTES: dict[str, list[Route]] = {
    "native": [*native.routes, Route("/v1/openapi.json", openapi, methods=["GET"])],
    "tfserving": tfserving_rest.routes,
    "v2": v2_rest.routes,
    "ui": ui.routes,
}
"""Every route of ours by API; the catch-alls below come after them."""
CATCH_ALL: dict[str, Route] = {
    "native": Route("/v1/{path:path}", not_found, methods=ALL_METHODS),
    "v2": Route("/v2/{path:path}", not_found, methods=ALL_METHODS),
}
ROUTES: list[Route] = [*(r for routes in API_ROUTES.values() for r in routes), *CATCH_ALL.values()]


def _matchers() -> list[tuple[str, bool, str]]:
    """(literal part of the path, whether it is the whole path, api) for every route, longest first."""
    found = {}
    for api, routes in [*API_ROUTES.items(), *((api, [r]) for api, r in CATCH_ALL.items())]:
        for route in routes:
            literal, _, _ = route.path.partition("{")
            found[(literal, "{" not in route.path)] = api
    return sorted(((lit, exact, api) for (lit, exact), api in found.items()), key=lambda m: -len(m[0]))


_MATCHERS = _matchers()
OUR_PATHS = frozenset(literal for literal, exact, _ in _MATCHERS if exact)
OUR_PREFIXES = tuple(literal for literal, exact, _ in _MATCHERS if not exact)


def is_ours(path: str) -> bool:
    """Whether ``path`` belongs to one of our routes rather than to BentoML's system routes."""
    return path in OUR_PATHS or path.startswith(OUR_PREFIXES)


def api_of(path: str) -> str:
    """The API a path of ours belongs to (the ``api`` label): ``native``, ``tfserving``, ``v2`` or ``ui``."""
    for literal, exact, api in _MATCHERS:
        if path == literal if exact else path.startswith(literal):
            return api
    return "native"


def tracing_exclusions() -> list[str]:
    """URL patterns BentoML's tracing skips: every route of ours (they are answered in the fast lane
    or have nothing worth tracing) and ``/metrics``."""
    return sorted({*OUR_PATHS, *OUR_PREFIXES, "/metrics"})
