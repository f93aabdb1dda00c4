"""The route table of every REST protocol, known once.

:data:`API_ROUTES` groups the routes by API (``native``, ``tfserving``, ``v2``, and ``ui`` for the playground
page and its files); the ASGI app, the fast lane's choice of which paths are ours, the ``api`` label of the
HTTP metrics and the tracing exclusions all derive from it, and a test holds the OpenAPI document against it.

:data:`DOCS_ROUTES` (``/docs``, its files, ``/docs.json``) are served by our app too but are not "ours": like
BentoML's own routes they go through BentoML's stack (the fast lane passes them on; BentoML's router finds
them in our mounted app) and need the ``admin`` scope. :data:`BENTOML_API` names the paths of the service's
typed ``@bentoml.api`` endpoints, which BentoML answers; they must not collide with any route here.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from service.errors import MethodNotAllowed, NotFound
from service.protocols import docs, feedback, native, ui
from service.protocols.docs import merge_documents
from service.protocols.http import dataplane_of, error_response, guarded, json_response
from service.protocols.openapi import openapi_document
from service.protocols.openapi_schemas import catalog_of
from service.protocols.tfserving import rest as tfserving_rest
from service.protocols.v2 import rest as v2_rest

ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


async def openapi(request: Request) -> Response:
    dataplane = dataplane_of(request)
    return json_response(openapi_document(catalog_of(dataplane), dataplane.limits))


@guarded
async def docs_document(request: Request) -> Response:
    """Our document with BentoML's routes merged in (``app.state.openapi_extra``: BentoML's document)."""
    dataplane = dataplane_of(request)
    extra = getattr(request.app.state, "openapi_extra", None)
    ours = openapi_document(catalog_of(dataplane), dataplane.limits)
    return json_response(merge_documents(ours, extra() if extra is not None else {}))


async def not_found(request: Request) -> Response:
    """Unknown routes under our prefixes answer in the one JSON error shape: 405 with ``Allow`` for a
    path of ours called with another method (the first route whose path matches, as Starlette picks),
    404 otherwise."""
    method, path = request.method, request.url.path
    for route in _OWN_ROUTES:
        if route.matches(request.scope)[0] is Match.PARTIAL:
            allow = sorted(route.methods or ())
            return error_response(MethodNotAllowed(f"{path} takes {', '.join(allow)}, not {method}", allow))
    return error_response(NotFound(f"no route {method} {path}; see /v1/openapi.json"))


API_ROUTES: dict[str, list[Route]] = {
    "native": [*native.routes, *feedback.routes, Route("/v1/openapi.json", openapi, methods=["GET"])],
    "tfserving": tfserving_rest.routes,
    "v2": v2_rest.routes,
    "ui": ui.routes,
}
"""Every route of ours by API; the catch-alls below come after them."""
_OWN_ROUTES = [r for routes in API_ROUTES.values() for r in routes]
CATCH_ALL: dict[str, Route] = {
    "native": Route("/v1/{path:path}", not_found, methods=ALL_METHODS),
    "v2": Route("/v2/{path:path}", not_found, methods=ALL_METHODS),
}
DOCS_ROUTES: list[Route] = [
    Route("/docs", docs.page, methods=["GET"]),
    Route("/docs/{file}", docs.asset, methods=["GET"]),
    Route("/docs.json", docs_document, methods=["GET"]),
]
"""The documentation (Swagger UI over the one merged document): BentoML's side of the fast lane."""
BENTOML_API: dict[str, str] = {"predict": "/predict", "models": "/models"}
"""The typed BentoML endpoints of the service: method name -> route (inference routes for access control)."""
ROUTES: list[Route] = [
    *_OWN_ROUTES,
    *DOCS_ROUTES,
    *CATCH_ALL.values(),
]


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


PROTOCOLS = {
    "native": native.PROTOCOL,
    "tfserving": tfserving_rest.PROTOCOL,
    "v2": v2_rest.PROTOCOL,
    "ui": "ui",
}


def protocol_of(path: str) -> str:
    """The ``protocol`` metric label of a path of ours (``native``, ``tfserving_rest``, ``v2_rest``, ``ui``)."""
    return PROTOCOLS[api_of(path)]


def tracing_exclusions() -> list[str]:
    """URL patterns BentoML's tracing skips: every route of ours (they are answered in the fast lane
    or have nothing worth tracing), ``/metrics`` and the docs (``/docs``, its files, ``/docs.json``)."""
    return sorted({*OUR_PATHS, *OUR_PREFIXES, "/metrics", "/docs"})
