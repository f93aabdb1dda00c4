"""The playground web page: ``GET /ui`` (the page) and ``GET /ui/{file}`` (its script and style sheet).

The files are package data of :mod:`service.ui`, read once and served from memory. Only the names in
:data:`ASSETS` are served, so no path can reach any other file. The page talks only to this server's own
APIs (same origin), which its Content-Security-Policy enforces: no CDN, nothing external, works offline.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.protocols.http import asset_type, guarded

PAGE = "index.html"
ASSETS: dict[str, str] = {
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}
"""The files ``/ui/{file}`` serves, with their content types."""
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


@cache
def read(name: str) -> bytes:
    """The bytes of one static file of :mod:`service.ui`."""
    return files("service.ui").joinpath(name).read_bytes()


def _file_response(name: str, media_type: str) -> Response:
    return Response(read(name), media_type=media_type, headers=HEADERS)


@guarded
async def page(_: Request) -> Response:
    """The playground page."""
    return _file_response(PAGE, "text/html; charset=utf-8")


@guarded
async def asset(request: Request) -> Response:
    """One of the page's files by name; 404 (our JSON error) for any other name."""
    name = request.path_params["file"]
    return _file_response(name, asset_type(ASSETS, name, "ui"))


routes = [
    Route("/ui", page, methods=["GET"]),
    Route("/ui/{file}", asset, methods=["GET"]),
]
