"""Triton's logging extension for REST and gRPC alike: the documents of :mod:`service.server_log`.

``GET /v2/logging`` answers the settings, ``POST /v2/logging`` changes the ones its JSON object names
(``null`` puts one back to its start value) and answers them all; gRPC ``LogSettings`` does both (no
settings in the request: a read). Both need the ``admin`` scope when access control is on.
"""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import service_pb2

from service.errors import InvalidInput
from service.server_log import get_log_control


def log_settings() -> dict[str, Any]:
    """The server's log settings as Triton answers them."""
    return get_log_control().settings().document()


def update_log_settings(changes: Any) -> dict[str, Any]:
    """Apply ``changes`` (a JSON object of Triton's setting names) in every worker; the settings after it."""
    if not isinstance(changes, dict):
        raise InvalidInput(f"the body must be a JSON object of log settings, got {type(changes).__name__}")
    return get_log_control().update(changes).document()


def grpc_changes(request: Any) -> dict[str, Any]:
    """A ``LogSettingsRequest``'s settings as Python values (an entry with no value: ``None``)."""
    changes: dict[str, Any] = {}
    for name, value in request.settings.items():
        kind = value.WhichOneof("parameter_choice")
        changes[name] = None if kind is None else getattr(value, kind)
    return changes


def grpc_response(document: dict[str, Any]) -> Any:
    """The ``LogSettingsResponse`` of a settings document."""
    response = service_pb2.LogSettingsResponse()
    for name, value in document.items():
        entry = response.settings[name]
        if isinstance(value, bool):
            entry.bool_param = value
        elif isinstance(value, int):
            entry.uint32_param = value
        else:
            entry.string_param = value
    return response
