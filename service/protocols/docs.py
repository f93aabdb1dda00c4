"""The API documentation: ``GET /docs`` (Swagger UI), ``GET /docs/{file}`` (its files), and the merge
behind ``GET /docs.json`` (one OpenAPI document of every route).

Swagger UI's files come from the ``swagger-ui-bundle-v2`` package (Swagger UI 5, which reads OpenAPI
3.1), are read once and served from memory by us: no CDN, works offline. Only the names in
:data:`ASSETS` are served, so no path reaches any other file. The page loads ``docs.json``, which is
our document (:func:`service.protocols.openapi.openapi_document`) with BentoML's own routes merged in
(:func:`merge_documents`; the BentoML part comes from the service, see :mod:`service.bento.app`).
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from swagger_ui_bundle import swagger_ui_path

from service.protocols.http import asset_type, guarded

INIT_JS = b"""window.onload = function () {
  window.ui = SwaggerUIBundle({url: "docs.json", dom_id: "#swagger-ui", deepLinking: true,
                               presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"});
};
"""
"""Our initializer (Swagger UI's own points at the Petstore); a file so the page has no inline script."""
PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>keras-serving API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
"""
ASSETS: dict[str, str] = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "init.js": "text/javascript; charset=utf-8",
}
"""The files ``/docs/{file}`` serves, with their content types."""
HEADERS = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}


@cache
def read(name: str) -> bytes:
    """The bytes of one file of the page (Swagger UI's from its package, ours from this module)."""
    return INIT_JS if name == "init.js" else swagger_ui_path.joinpath(name).read_bytes()


@guarded
async def page(_: Request) -> Response:
    """The Swagger UI page over ``docs.json``."""
    return Response(PAGE, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})


@guarded
async def asset(request: Request) -> Response:
    """One of the page's files by name; 404 (our JSON error) for any other name."""
    name = request.path_params["file"]
    media_type = asset_type(ASSETS, name, "docs")  # before any read: only the page's files are read
    return Response(read(name), media_type=media_type, headers=HEADERS)


def merge_documents(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """``ours`` (OpenAPI 3.1) with the paths, schemas and tags of ``theirs`` (BentoML's document) added.

    Where both describe a path (``/livez``, ``/readyz``, ``/metrics``) ours is kept; a schema name both
    define is kept from ours too. BentoML's operations are plain JSON Schema (pydantic), valid in 3.1.
    Neither argument is changed.
    """
    merged = copy.deepcopy(ours)
    paths = merged.setdefault("paths", {})
    for path, item in theirs.get("paths", {}).items():
        paths.setdefault(path, copy.deepcopy(item))
    schemas = merged.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in theirs.get("components", {}).get("schemas", {}).items():
        schemas.setdefault(name, copy.deepcopy(schema))
    tags = merged.setdefault("tags", [])
    known = {tag["name"] for tag in tags}
    tags.extend(copy.deepcopy(t) for t in theirs.get("tags", []) if t.get("name") not in known)
    merged["info"] = {**merged.get("info", {}), "title": "keras-serving: every HTTP route"}
    return merged
