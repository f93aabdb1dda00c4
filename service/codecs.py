"""Wire formats to NumPy and back. Codecs convert; the data plane validates against the signature."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from service.errors import InvalidInput

_NUMERIC_KINDS = frozenset("iuf")


def loads(body: bytes) -> Any:
    """Parse a JSON body; malformed JSON is a 400 that says where it broke."""
    if not body:
        raise InvalidInput("empty request body; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None


def dumps(obj: Any) -> bytes:
    """Serialize a response; NumPy arrays are written natively (no ``tolist``)."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def json_to_array(value: Any, name: str) -> np.ndarray:
    """Turn a nested JSON list of numbers into an array; strings, booleans, nulls or ragged rows are 400s."""
    try:
        array = np.asarray(value)
    except ValueError as exc:
        raise InvalidInput(f"input {name!r}: rows have different lengths ({exc})") from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise InvalidInput(
            f"input {name!r}: expected numbers, got {_describe(array)}",
            expected="numeric",
            got=_describe(array),
        )
    return array


def _describe(array: np.ndarray) -> str:
    kind = array.dtype.kind
    if kind == "b":
        return "booleans"
    if kind in "US":
        return "strings"
    if kind == "O":
        return "non-numeric values (null, objects or mixed types)"
    return str(array.dtype)


def parse_version(raw: str | None) -> int | None:
    """A version from a path or message field: ``None``/empty -> default version, else a positive int (400)."""
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidInput(f"version must be a positive integer, got {raw!r}")
    return int(raw)
