"""Codecs turn wire data into arrays or a clear 400; the error table maps every class once."""

from __future__ import annotations

import numpy as np
import pytest

from service.codecs import dumps, json_to_array, loads
from service.errors import (
    ERROR_TABLE,
    InternalError,
    InvalidInput,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    Unavailable,
    status_of,
)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [(b"", "empty request body"), (b"{not json", "malformed JSON"), (b'{"a": 1', "malformed JSON")],
)
def test_loads_rejects_bad_json(body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        loads(body)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ([["a", "b"]], "strings"),
        ([[True, False]], "booleans"),
        ([[1.0, None]], "non-numeric"),
        ([[1.0, 2.0], [3.0]], "different lengths"),
    ],
)
def test_json_to_array_rejects_non_numeric(value: object, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        json_to_array(value, "x")


def test_json_to_array_and_dumps_round_trip_numbers() -> None:
    array = json_to_array([[1, 2.5], [3, 4]], "x")
    assert array.shape == (2, 2) and array.dtype.kind == "f"
    assert loads(dumps({"y": array.astype(np.float32)})) == {"y": [[1.0, 2.5], [3.0, 4.0]]}


def test_error_table_maps_each_class_to_http_and_grpc() -> None:
    assert status_of(InvalidInput("x")) == (400, "INVALID_ARGUMENT")
    assert status_of(NotFound("x")) == (404, "NOT_FOUND")
    assert status_of(PayloadTooLarge("x")) == (413, "RESOURCE_EXHAUSTED")
    assert status_of(Unavailable("x")) == (503, "UNAVAILABLE")
    assert status_of(Overloaded("x")) == (503, "UNAVAILABLE")
    assert status_of(InternalError()) == (500, "INTERNAL")
    assert len(ERROR_TABLE) == 7
    assert Unavailable("x", retry_after_s=3).headers() == {"Retry-After": "3"}
    assert InvalidInput("bad", expected=[1]).body() == {"error": "bad", "expected": [1]}
    assert "Traceback" not in InternalError().message


def test_openapi_lists_every_rest_route_of_the_app() -> None:
    from starlette.routing import Route

    from service.app import build_app
    from service.openapi import openapi_document

    documented = set(openapi_document()["paths"])
    routes = {r.path for r in build_app().routes if isinstance(r, Route) and "{path:path}" not in r.path}
    routes.discard("/v1/openapi.json")
    assert routes <= documented, f"undocumented routes: {sorted(routes - documented)}"
