"""One small exception hierarchy for every protocol.

Each class carries its HTTP status and its gRPC status code name, and nothing else restates them:
:func:`service.protocols.http.error_response` and :func:`service.protocols.grpc_errors.abort` read these
two attributes, so the transports can never disagree. The README's error table lists the classes.
"""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    """Base class: an error the client should see, with a message safe to show."""

    http_status = 500
    grpc_code = "INTERNAL"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers that belong to this error."""
        return {}

    def body(self) -> dict[str, Any]:
        """The one JSON error shape of every route: ``{"error": message, ...details}``."""
        return {"error": self.message, **self.details}


class InvalidInput(ServingError):
    """Malformed body, wrong shape, wrong dtype, empty or non-numeric input."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class NotFound(ServingError):
    """Unknown model, version, label or route."""

    http_status = 404
    grpc_code = "NOT_FOUND"


class Unauthenticated(ServingError):
    """No bearer token, or one the server does not know (access control is on)."""

    http_status = 401
    grpc_code = "UNAUTHENTICATED"

    def __init__(self, message: str, challenge: str = 'Bearer realm="keras-serving"') -> None:
        super().__init__(message)
        self.challenge = challenge

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge}


class Forbidden(ServingError):
    """A valid token without the scope the route needs, or a cross-origin request from a refused origin."""

    http_status = 403
    grpc_code = "PERMISSION_DENIED"

    def __init__(self, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.challenge = challenge

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge} if self.challenge else {}


class MethodNotAllowed(ServingError):
    """A route of ours called with a method it does not take (``Allow`` lists the ones it does)."""

    http_status = 405
    grpc_code = "UNIMPLEMENTED"

    def __init__(self, message: str, allow: list[str]) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allow)}


class NotEnabled(ServingError):
    """A protocol operation the server's mode rules out (Triton's explicit model load and unload: the
    repository, which the server polls, decides what is loaded). A 4xx: asking again will not help, and
    nothing is wrong with the server (a 5xx would page whoever watches its error rate)."""

    http_status = 409
    grpc_code = "FAILED_PRECONDITION"


class UnsupportedMediaType(ServingError):
    """A request body in a ``Content-Encoding`` the server does not decode."""

    http_status = 415
    grpc_code = "INVALID_ARGUMENT"


class PayloadTooLarge(ServingError):
    """Request body over the configured limit."""

    http_status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class Unavailable(ServingError):
    """Model not ready (loading, failed, unloading) or server overloaded; retry later."""

    http_status = 503
    grpc_code = "UNAVAILABLE"

    def __init__(self, message: str, retry_after_s: int = 1, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class Overloaded(Unavailable):
    """Rejected rather than queued: the expected queue delay is over the model's budget, the queue is
    full, or the worker has too many requests in flight. ``retry_after_s`` comes from the backlog."""

    def __init__(
        self, message: str, reason: str = "queue_full", retry_after_s: int = 1, **details: Any
    ) -> None:
        super().__init__(message, retry_after_s, **details)
        self.reason = reason
        """``queue_delay``, ``queue_full`` or ``inflight`` (the ``reason`` label of ``serving_rejected``)."""


class TimedOut(ServingError):
    """The request was not answered within the server's request timeout or the client's deadline."""

    http_status = 504
    grpc_code = "DEADLINE_EXCEEDED"


class ClientGone(ServingError):
    """The client closed the connection (or cancelled the call) before its answer was ready."""

    http_status = 499  # nginx's "client closed request"; nobody reads it, the metrics do
    grpc_code = "CANCELLED"


class InternalError(ServingError):
    """An unexpected failure; the message never contains internals."""

    def __init__(self, message: str = "internal error; see the server log", **details: Any) -> None:
        super().__init__(message, **details)
