"""A JSON body whose tensors arrive as arrays, without building a Python list per row.

``orjson.loads`` turns a ``[1, 28, 28, 1]`` image into 785 Python lists and 784 floats (≈ 40 µs), and
:func:`service.protocols.json.json_to_array` then pays ≈ 27 µs more to make an array of them; the lists
also feed the garbage collector. :func:`loads_tensors` parses the body with simdjson instead and reads
each tensor's numbers straight into a NumPy buffer (≈ 15 µs for the same body, no lists).

It is a fast path only: it answers exactly what ``loads`` followed by ``json_to_array`` would, or
``None`` whenever it cannot prove that, and the caller then takes the ordinary path (which also writes
every error message). A tensor is taken here when it is a regular nested list of numbers: its shape is
read off the first elements, and regularity is proven by comparing the body's *skeleton* (the body
without number characters and white space) with the skeleton the parsed envelope and a regular array of
that shape would have. Integers give int64, any fractional number float64, as ``np.array`` does.
Bodies over :data:`MAX_BODY` bytes or with a backslash (an escaped string) take the ordinary path, and
so do duplicate keys (orjson keeps the last, simdjson's lookup the first) and fractional tensors with a
magnitude of 2**53 or more (an integer among them might have been rounded).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache
from math import prod
from typing import Any

import numpy as np
import orjson
import simdjson

MAX_BODY = 1 << 20
"""Larger bodies take the ordinary path (the parser keeps the buffers of the largest body it read)."""

Path = tuple[str | int, ...]
IsTensor = Callable[[Path], bool]

_EXACT = 2.0**53
"""Integers below this magnitude are exact in float64."""
_SKIPPED = b"0123456789.eE+- \t\r\n"
_local = threading.local()


class _Ordinary(Exception):
    """This body takes the ordinary path."""


def loads_tensors(body: bytes | bytearray, is_tensor: IsTensor, max_depth: int) -> Any | None:
    """``orjson.loads(body)`` with every array at a path ``is_tensor`` accepts already an ``np.ndarray``
    (of at most ``max_depth`` dimensions); ``None`` when the ordinary path must decide."""
    if len(body) > MAX_BODY or b"\\" in body:
        return None
    try:
        doc = _parse(body)
    except ValueError:  # malformed JSON: the ordinary path says where it broke
        return None
    try:
        value, skeleton = _convert(doc, (), is_tensor, max_depth)
    except _Ordinary:
        return None
    finally:
        del doc  # the parser is reused only once no element of its document is alive
    return value if body.translate(None, _SKIPPED) == skeleton else None


def _parse(body: bytes | bytearray) -> Any:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    try:
        return parser.parse(body)
    except RuntimeError:  # an element of the last document is still referenced: use a new parser
        _local.parser = simdjson.Parser()
        return _local.parser.parse(body)


def _convert(node: Any, path: Path, is_tensor: IsTensor, max_depth: int) -> tuple[Any, bytes]:
    """The Python value of ``node`` (tensors as arrays) and the skeleton its text must have."""
    if isinstance(node, simdjson.Array):
        if is_tensor(path):
            return _tensor(node, max_depth)
        items = [_convert(item, (*path, i), is_tensor, max_depth) for i, item in enumerate(node)]
        return [v for v, _ in items], b"[" + b",".join(s for _, s in items) + b"]"
    if isinstance(node, simdjson.Object):
        keys = list(node.keys())
        if len(set(keys)) != len(keys):
            raise _Ordinary
        out: dict[str, Any] = {}
        parts = []
        for key in keys:
            out[key], skeleton = _convert(node[key], (*path, key), is_tensor, max_depth)
            parts.append(_skeleton(orjson.dumps(key)) + b":" + skeleton)
        return out, b"{" + b",".join(parts) + b"}"
    return node, _skeleton(orjson.dumps(node))


def _tensor(node: Any, max_depth: int) -> tuple[np.ndarray, bytes]:
    shape: list[int] = []
    probe = node
    while isinstance(probe, simdjson.Array):
        if not len(probe) or len(shape) == max_depth:
            raise _Ordinary  # an empty list, or too deep: the ordinary path reports it
        shape.append(len(probe))
        probe = probe[0]
    if isinstance(probe, float):  # a fractional number makes it float64: no integer pass first
        flat = _fractional(node)
    else:
        try:
            flat = np.frombuffer(node.as_buffer(of_type="i"), dtype=np.int64)
        except ValueError:  # an integer outside int64
            raise _Ordinary from None
        except TypeError:  # a fractional number further on (or a non-number: the skeleton rejects it)
            flat = _fractional(node)
    if flat.size != prod(shape):
        raise _Ordinary
    return flat.reshape(shape), _regular(tuple(shape))


def _fractional(node: Any) -> np.ndarray:
    try:
        flat = np.frombuffer(node.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError):
        raise _Ordinary from None
    if not np.abs(flat).max() < _EXACT:  # an integer this large might have been rounded
        raise _Ordinary
    return flat


@lru_cache(maxsize=256)
def _regular(shape: tuple[int, ...]) -> bytes:
    """The skeleton of a regular nested list of numbers of ``shape``."""
    inner = b"[" + b"," * (shape[-1] - 1) + b"]"
    for size in reversed(shape[:-1]):
        inner = b"[" + b",".join([inner] * size) + b"]"
    return inner


def _skeleton(text: bytes) -> bytes:
    return text.translate(None, _SKIPPED)
