"""Each error class carries its HTTP status and gRPC code; the HTTP and gRPC mappings read only those."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import orjson
import pytest

from service.errors import (
    ClientGone,
    Forbidden,
    InternalError,
    InvalidInput,
    MethodNotAllowed,
    NotEnabled,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    ServingError,
    TimedOut,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from service.protocols.grpc_errors import abort
from service.protocols.http import error_response

CASES = [
    (InvalidInput("x"), 400, "INVALID_ARGUMENT"),
    (NotFound("x"), 404, "NOT_FOUND"),
    (Unauthenticated("x"), 401, "UNAUTHENTICATED"),
    (Forbidden("x"), 403, "PERMISSION_DENIED"),
    (MethodNotAllowed("x", ["POST"]), 405, "UNIMPLEMENTED"),
    (NotEnabled("x"), 409, "FAILED_PRECONDITION"),
    (PayloadTooLarge("x"), 413, "RESOURCE_EXHAUSTED"),
    (UnsupportedMediaType("x"), 415, "INVALID_ARGUMENT"),
    (Unavailable("x"), 503, "UNAVAILABLE"),
    (Overloaded("x"), 503, "UNAVAILABLE"),
    (TimedOut("x"), 504, "DEADLINE_EXCEEDED"),
    (ClientGone("x"), 499, "CANCELLED"),
    (InternalError(), 500, "INTERNAL"),
]


def test_every_error_class_is_covered() -> None:
    def subclasses(cls: type) -> set[type]:
        return {cls} | {s for sub in cls.__subclasses__() for s in subclasses(sub)}

    assert subclasses(ServingError) - {ServingError} == {type(e) for e, _, _ in CASES}


@pytest.mark.parametrize(("error", "http", "grpc_code"), CASES)
def test_http_answer_has_the_class_status_and_body(error: ServingError, http: int, grpc_code: str) -> None:
    response = error_response(error)
    assert response.status_code == http
    assert orjson.loads(response.body) == error.body() == {"error": error.message}
    retry = response.headers.get("retry-after")
    assert (retry == "1") is isinstance(error, Unavailable), "Retry-After exactly on 503s"
    assert (response.headers.get("allow") == "POST") is isinstance(error, MethodNotAllowed), "Allow on 405s"


class FakeContext:
    """Records what :func:`abort` does with a real ``grpc.aio.ServicerContext`` (the calls only)."""

    def __init__(self) -> None:
        self.metadata: Any = None
        self.aborted: tuple[grpc.StatusCode, str] | None = None
        self.trailing: Any = None

    async def send_initial_metadata(self, metadata: Any) -> None:
        self.metadata = metadata

    async def abort(self, code: grpc.StatusCode, message: str, trailing_metadata: Any = ()) -> None:
        """``grpc.aio.ServicerContext.abort(code, details, trailing_metadata)``."""
        self.aborted = (code, message)
        self.trailing = trailing_metadata


@pytest.mark.parametrize(("error", "http", "grpc_code"), CASES)
def test_grpc_abort_uses_the_class_code(error: ServingError, http: int, grpc_code: str) -> None:
    context = FakeContext()
    echo = (("x-request-id", "r-1"),)
    asyncio.run(abort(context, error, echo))  # type: ignore[arg-type]
    assert context.aborted == (getattr(grpc.StatusCode, grpc_code), error.message)
    assert context.trailing == echo
    expected = (("retry-after", "1"),) if isinstance(error, Unavailable) else None
    assert context.metadata == expected


def test_details_and_messages() -> None:
    assert Unavailable("x", retry_after_s=3).headers() == {"Retry-After": "3"}
    assert InvalidInput("bad", expected=[1]).body() == {"error": "bad", "expected": [1]}
    assert "Traceback" not in InternalError().message
    assert Unauthenticated("x").headers() == {"WWW-Authenticate": 'Bearer realm="keras-serving"'}
    assert Forbidden("x").headers() == {}
    assert Forbidden("x", challenge='Bearer error="insufficient_scope"').headers() == {
        "WWW-Authenticate": 'Bearer error="insufficient_scope"'
    }
