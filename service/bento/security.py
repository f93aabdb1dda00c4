"""Access control, CORS and TLS from the settings, wired into BentoML (glue only; the rules live in
:mod:`service.protocols.access`, :mod:`service.protocols.gate` and :mod:`service.protocols.grpc_access`).

* :func:`access_policy` builds the token policy (``None``: no token configured, access control off).
* :func:`install_gate` puts :class:`service.protocols.gate.Gate` into BentoML's own stack
  (``Service.add_asgi_middleware``, a public API): it then covers BentoML's routes (``/metrics``,
  ``/livez``, ``/readyz``, docs) and, with the fast lane off, every route. :func:`gated` puts the same
  gate in front of our app for the fast lane. Neither installs anything when both are off.
* :func:`tls_config` is BentoML's ``ssl`` service configuration (uvicorn then serves TLS only).
"""

from __future__ import annotations

from typing import Any

from service.protocols.access import AccessPolicy, Grant, digest, read_token_file
from service.protocols.gate import ASGIApp, Gate
from service.settings import Settings


def access_policy(settings: Settings) -> AccessPolicy | None:
    """The policy of the configured tokens; ``None`` when there are none. Fails on a bad token file."""
    grants: list[Grant] = [
        *((digest(t.get_secret_value()), frozenset({"inference"})) for t in settings.inference_tokens),
        *((digest(t.get_secret_value()), frozenset({"admin"})) for t in settings.admin_tokens),
    ]
    if settings.token_file is not None:
        grants.extend(read_token_file(settings.token_file))
    if not grants:
        if settings.protect_health or settings.protect_metrics:
            raise ValueError(
                "SERVING_PROTECT_HEALTH/SERVING_PROTECT_METRICS need tokens (SERVING_ADMIN_TOKENS or "
                "SERVING_TOKEN_FILE)"
            )
        return None
    return AccessPolicy(grants, settings.protect_health, settings.protect_metrics)


def _gate_needed(policy: AccessPolicy | None, settings: Settings) -> bool:
    return policy is not None or bool(settings.cors_origins)


def install_gate(service: Any, policy: AccessPolicy | None, settings: Settings) -> None:
    """Add the gate to BentoML's middleware of ``service`` when access control or CORS is on."""
    if _gate_needed(policy, settings):
        service.add_asgi_middleware(Gate, policy=policy, cors_origins=settings.cors_origins)


def gated(app: ASGIApp, policy: AccessPolicy | None, settings: Settings) -> ASGIApp:
    """``app`` behind the gate when access control or CORS is on, else ``app`` itself."""
    return Gate(app, policy, settings.cors_origins) if _gate_needed(policy, settings) else app


def tls_config(settings: Settings) -> dict[str, Any]:
    """``@bentoml.service`` keyword arguments for TLS on the HTTP port (none without a certificate)."""
    if settings.tls_certfile is None or settings.tls_keyfile is None:
        return {}
    return {
        "ssl": {
            "enabled": True,
            "certfile": str(settings.tls_certfile.resolve()),
            "keyfile": str(settings.tls_keyfile.resolve()),
        }
    }
