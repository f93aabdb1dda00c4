"""The ASGI application BentoML mounts: every REST protocol's routes over one data plane."""

from __future__ import annotations

from starlette.applications import Starlette

from service.dataplane import DataPlane
from service.protocols.routes import ROUTES


def build_app(dataplane: DataPlane | None = None) -> Starlette:
    """The Starlette app; ``dataplane`` may be attached later through ``app.state.dataplane``."""
    app = Starlette(routes=ROUTES)
    app.state.dataplane = dataplane
    return app
