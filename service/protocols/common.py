"""What every protocol adapter shares, HTTP or gRPC: version parsing and little-endian tensor bytes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.errors import InvalidInput


def parse_version(raw: str | None) -> int | None:
    """A version from a path or message field: ``None``/empty -> default version, else a positive int (400).

    Only ASCII digits count: ``str.isdigit`` also accepts other scripts' digits, which ``int`` may not take.
    """
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise InvalidInput(f"version must be a positive integer, got {raw!r}")
    return int(raw)


def le_bytes(array: np.ndarray) -> bytes:
    """``array`` as little-endian, row-major bytes (V2 binary data, gRPC raw contents, TF tensor_content)."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def from_le_bytes(name: str, raw: bytes | memoryview, dtype: np.dtype[Any], shape: list[int]) -> np.ndarray:
    """An array of ``shape`` from little-endian row-major bytes; 400 when the byte count does not fit."""
    little = dtype.newbyteorder("<")
    expected = math.prod(shape) * little.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"input {name!r}: {len(raw)} bytes do not fit shape {shape} of {dtype.name} "
            f"({expected} bytes expected)"
        )
    return np.frombuffer(raw, dtype=little).reshape(shape)
