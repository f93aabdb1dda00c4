"""What every protocol adapter shares, HTTP or gRPC: version parsing and little-endian tensor bytes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.errors import InvalidInput


def parse_version(raw: str | None) -> int | None:
    """A version from a path or message field: ``None``/empty -> default version, else a positive int (400).

    Only ASCII digits count: ``str.isdigit`` also accepts other scripts' digits, which ``int`` may not take;
    at most 18 of them (any int64), so ``int`` never meets a number too long to convert.
    """
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) < 1:
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


def check_int_range(name: str, values: np.ndarray, target: np.dtype[Any], type_name: str) -> None:
    """400 when integer ``values`` do not fit the integer dtype ``target`` they stand for (``300`` for UINT8)."""
    if values.size and values.dtype.kind in "iu" and target.kind in "iu":
        info = np.iinfo(target)
        low, high = values.min(), values.max()
        if low < info.min or high > info.max:
            raise InvalidInput(
                f"input {name!r}: values from {low} to {high} are outside {type_name}'s range "
                f"[{info.min}, {info.max}]"
            )
