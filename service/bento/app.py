"""The ASGI application BentoML mounts: every REST protocol's routes over one data plane."""

from __future__ import annotations

import json
from typing import Any

from starlette.middleware import Middleware

from service.dataplane import DataPlane
from service.protocols.admission import Admission
from service.protocols.dispatch import RestApp
from service.protocols.routes import ROUTES, protocol_of
from service.settings import get_settings


def bentoml_document() -> dict[str, Any]:
    """BentoML's OpenAPI document of the running service (its typed API, health and metrics routes), as
    BentoML serves it; empty outside a BentoML worker (no service instantiated)."""
    import bentoml  # only here: building the app does not need BentoML
    from bentoml.exceptions import BentoMLException

    try:
        instance = bentoml.get_current_service()
    except BentoMLException:
        return {}
    return json.loads(
        json.dumps(instance.bento_service.openapi_spec.asdict())
    )  # keys as strings: 200 → "200"


def build_app(dataplane: DataPlane | None = None) -> RestApp:
    """The app (:class:`~service.protocols.dispatch.RestApp`: Starlette whose routes are dispatched
    directly); ``dataplane`` may be attached later through ``app.state.dataplane``.
    :class:`Admission` (in-flight cap, drain) wraps every route; answers of ``SERVING_COMPRESS_MIN_BYTES``
    and more are compressed for clients that ask."""
    settings = get_settings()
    admission = Middleware(Admission, protocol_of=protocol_of, sticky_header=settings.sticky_header)
    app = RestApp(routes=ROUTES, middleware=[admission], compress_min_bytes=settings.compress_min_bytes)
    app.state.dataplane = dataplane
    app.state.openapi_extra = bentoml_document  # merged into /docs.json
    return app
