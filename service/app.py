"""The ASGI application BentoML mounts: every REST protocol's routes over one data plane."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.dataplane import DataPlane
from service.errors import NotFound
from service.openapi import openapi_document
from service.protocols import native, tfserving_rest, v2_rest
from service.protocols.http import error_response, json_response

ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


async def openapi(_: Request) -> Response:
    return json_response(openapi_document())


async def not_found(request: Request) -> Response:
    """Unknown routes under our prefixes answer in the one JSON error shape."""
    return error_response(NotFound(f"no route {request.method} {request.url.path}; see /v1/openapi.json"))


def build_app(dataplane: DataPlane | None = None) -> Starlette:
    """The Starlette app; ``dataplane`` may be attached later through ``app.state.dataplane``."""
    app = Starlette(
        routes=[
            *native.routes,
            *tfserving_rest.routes,
            *v2_rest.routes,
            Route("/v1/openapi.json", openapi, methods=["GET"]),
            Route("/v1/{path:path}", not_found, methods=ALL_METHODS),
            Route("/v2/{path:path}", not_found, methods=ALL_METHODS),
        ]
    )
    app.state.dataplane = dataplane
    return app
