"""What every protocol adapter shares, HTTP or gRPC: version parsing, client timeouts and little-endian
tensor bytes."""

from __future__ import annotations

import asyncio
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


def parse_timeout(raw: Any, unit_s: float, where: str) -> float:
    """A client's timeout in seconds from ``raw`` counted in ``unit_s`` seconds (1e-3 for ms, 1e-6 for
    V2's microseconds); 400 unless it is a positive finite number."""
    try:
        value = float(raw) if isinstance(raw, str | int | float) and not isinstance(raw, bool) else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"{where} must be a positive number, got {raw!r}")
    return value * unit_s


def deadline_after(seconds: float | None) -> float | None:
    """The event-loop time ``seconds`` from now (what :attr:`InferenceRequest.deadline` holds); ``None``
    for no timeout."""
    return None if seconds is None else asyncio.get_running_loop().time() + seconds


def earliest(*deadlines: float | None) -> float | None:
    """The first of the given deadlines, ``None`` when none is given."""
    given = [d for d in deadlines if d is not None]
    return min(given) if given else None


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
