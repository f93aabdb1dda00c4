"""Access control, known once for HTTP and gRPC: which scope a route or method needs, what a token grants.

Two scopes, independent of each other (a token may carry both):

* ``inference``: every route of the protocols (``/v1/...``, ``/v2...``: predict/infer, feedback, model
  lists, metadata, status, model readiness, the OpenAPI document) but the log settings, the service's
  typed BentoML endpoints (``POST /predict``, ``POST /models``) and every gRPC method except the two
  health calls (``ServerLive``, ``ServerReady``) and ``LogSettings``.
* ``admin``: the server's log settings (``/v2/logging``, gRPC ``LogSettings``: they change every worker),
  ``/metrics`` and the health routes when they are protected (``SERVING_PROTECT_METRICS``,
  ``SERVING_PROTECT_HEALTH``), and every other path: the docs (``/docs``, its files, ``/docs.json``),
  BentoML's index page and anything not listed here.

Open whatever the tokens: the health routes and ``/metrics`` unless protected, and the playground's static
files (``/ui``, ``/ui/{file}``; the page carries no data, its API calls need a token like any client's).

Tokens are kept only as sha256 digests and compared with :func:`hmac.compare_digest` against every known
digest (no early exit). The transports (:mod:`service.protocols.gate`, :mod:`service.protocols.grpc_access`)
read the ``Authorization`` header or ``authorization`` metadata and call :meth:`AccessPolicy.check`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from service.errors import Forbidden, Unauthenticated
from service.protocols.routes import BENTOML_API, api_of, is_ours

Scope = Literal["inference", "admin"]
SCOPES: frozenset[str] = frozenset({"inference", "admin"})
REALM = 'Bearer realm="keras-serving"'

HEALTH_PATHS = frozenset({"/livez", "/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
HEALTH_PREFIX = "/readyz/"
METRICS_PATH = "/metrics"
BENTOML_API_PATHS = frozenset(BENTOML_API.values())
GRPC_HEALTH = frozenset(
    {"/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady"}
)
ADMIN_PATHS = frozenset({"/v2/logging"})
GRPC_ADMIN = frozenset({"/inference.GRPCInferenceService/LogSettings"})

Grant = tuple[bytes, frozenset[str]]
"""A token's sha256 digest and the scopes it grants."""


def digest(token: str) -> bytes:
    """The sha256 digest under which a token is known."""
    return hashlib.sha256(token.encode()).digest()


def read_token_file(path: Path) -> list[Grant]:
    """Parse a token file: ``sha256:<64 hex digits> <scope>[,<scope>]`` per line; ``#`` starts a comment.

    Create a line with ``printf %s "$TOKEN" | sha256sum``. Any malformed line fails with its number.
    """
    grants: list[Grant] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        where = f"{path}:{number}"
        if len(fields) != 2 or not fields[0].startswith("sha256:"):
            raise ValueError(f"{where}: expected 'sha256:<hex digest> <scope>[,<scope>]', got {line!r}")
        try:
            hashed = bytes.fromhex(fields[0].removeprefix("sha256:"))
        except ValueError:
            hashed = b""
        if len(hashed) != 32:
            raise ValueError(f"{where}: the digest must be 64 hexadecimal digits (sha256)")
        scopes = frozenset(fields[1].split(","))
        if not scopes <= SCOPES:
            raise ValueError(f"{where}: unknown scope {sorted(scopes - SCOPES)}; scopes: {sorted(SCOPES)}")
        grants.append((hashed, scopes))
    return grants


class AccessPolicy:
    """The known tokens (as digests) and which scope each path or gRPC method needs."""

    def __init__(self, grants: Iterable[Grant], protect_health: bool = False, protect_metrics: bool = False):
        self.grants = list(grants)
        if not self.grants:
            raise ValueError("access control needs at least one token")
        self.protect_health = protect_health
        self.protect_metrics = protect_metrics

    def http_scope(self, path: str) -> Scope | None:
        """The scope ``path`` needs, or ``None`` when it is open."""
        if path in HEALTH_PATHS or path.startswith(HEALTH_PREFIX):
            return "admin" if self.protect_health else None
        if path == METRICS_PATH:
            return "admin" if self.protect_metrics else None
        if path in ADMIN_PATHS:
            return "admin"
        if is_ours(path):
            return None if api_of(path) == "ui" else "inference"
        return "inference" if path in BENTOML_API_PATHS else "admin"

    def grpc_scope(self, method: str) -> Scope | None:
        """The scope a gRPC method (``/package.Service/Method``) needs, or ``None`` when it is open."""
        if method in GRPC_HEALTH:
            return "admin" if self.protect_health else None
        return "admin" if method in GRPC_ADMIN else "inference"

    def scopes_of(self, token: str) -> frozenset[str]:
        """Every scope the token grants (empty for an unknown token); constant time per known digest."""
        hashed = digest(token)
        granted: frozenset[str] = frozenset()
        for known, scopes in self.grants:
            if hmac.compare_digest(known, hashed):
                granted |= scopes
        return granted

    def check(self, authorization: str | None, scope: Scope, what: str) -> None:
        """Raise :class:`Unauthenticated` or :class:`Forbidden` unless ``authorization`` grants ``scope``.

        ``authorization`` is the header's (or metadata's) value, ``Bearer <token>``; ``what`` names the
        route or method in the message.
        """
        if authorization is None:
            raise Unauthenticated(
                f"{what} needs a bearer token with the {scope!r} scope (Authorization: Bearer <token>)",
                f'{REALM}, scope="{scope}"',
            )
        kind, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if kind.lower() != "bearer" or not token:
            raise Unauthenticated(
                "the Authorization header must be 'Bearer <token>'", f'{REALM}, error="invalid_request"'
            )
        granted = self.scopes_of(token)
        if not granted:
            raise Unauthenticated("the bearer token is not valid", f'{REALM}, error="invalid_token"')
        if scope not in granted:
            raise Forbidden(
                f"the token does not grant the {scope!r} scope that {what} needs",
                f'{REALM}, error="insufficient_scope", scope="{scope}"',
            )
