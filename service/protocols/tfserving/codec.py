"""TF Serving tensors: ``TensorProto`` <-> NumPy (gRPC) and the REST row/columnar JSON formats."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from service.errors import InvalidInput
from service.limits import DEFAULT_LIMITS, Limits
from service.protocols.common import check_int_range, from_le_bytes, le_bytes
from service.protocols.json import json_to_array
from service.protocols.tfserving.spec import DTYPE_BY_NUMBER, DTYPES, SIGNATURE, check_signature, dtype_name

# The typed ``*_val`` field of a TensorProto that carries each dtype's values.
_VALUE_FIELDS = {
    "DT_FLOAT": "float_val", "DT_DOUBLE": "double_val", "DT_INT32": "int_val", "DT_UINT8": "int_val",
    "DT_INT16": "int_val", "DT_INT8": "int_val", "DT_INT64": "int64_val", "DT_BOOL": "bool_val",
    "DT_UINT16": "int_val", "DT_UINT32": "uint32_val", "DT_UINT64": "uint64_val",
}  # fmt: skip
_FIELD_DTYPES = {
    "float_val": np.float32, "double_val": np.float64, "int_val": np.int32, "int64_val": np.int64,
    "bool_val": np.bool_, "uint32_val": np.uint32, "uint64_val": np.uint64, "half_val": np.int32,
}  # fmt: skip
"""The value type of each ``*_val`` field, so values are read exactly (then range-checked)."""


# ----- gRPC: TensorProto ---------------------------------------------------------------------------
def decode_inputs(inputs: Any, limits: Limits = DEFAULT_LIMITS) -> dict[str | None, np.ndarray]:
    """The ``inputs`` map of a ``PredictRequest`` as arrays; the count and the declared shapes are
    checked against ``limits`` before any tensor is decoded."""
    limits.check_count("inputs", len(inputs))
    total = 0
    for name, proto in inputs.items():
        limits.check_name("input", name)
        total += limits.check_shape(name, [max(d.size, 0) for d in proto.tensor_shape.dim])
    limits.check_total(total)
    return {name: tensor_to_array(name, proto, limits) for name, proto in inputs.items()}


def tensor_to_array(name: str, proto: Any, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """A TensorProto as an array (``tensor_content`` bytes or the typed ``*_val`` fields); the declared
    shape is checked against ``limits`` first, values against the dtype's range (400, never a wrap)."""
    if proto.dtype not in DTYPE_BY_NUMBER:
        raise InvalidInput(
            f"input {name!r}: TensorProto dtype {proto.dtype} is not a numeric type this server takes"
        )
    dtype_enum, dtype = DTYPE_BY_NUMBER[proto.dtype]
    shape = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: tensor_shape {shape} has a negative dimension")
    count = limits.check_shape(name, shape)
    if proto.tensor_content:
        return from_le_bytes(name, proto.tensor_content, dtype, shape)
    field = "half_val" if dtype_enum == "DT_HALF" else _VALUE_FIELDS[dtype_enum]
    values: np.ndarray = np.asarray(getattr(proto, field), dtype=_FIELD_DTYPES[field])
    storage = np.dtype(np.uint16) if dtype_enum == "DT_HALF" else dtype  # half_val holds the bit patterns
    check_int_range(name, values, storage, dtype_enum)
    array = values.astype(storage)
    if dtype_enum == "DT_HALF":
        array = array.view(np.float16)
    if array.size == 1 and count > 1:
        array = np.full(count, array[0], dtype=dtype)  # TF fills a shape from one value
    if array.size != count:
        raise InvalidInput(f"input {name!r}: shape {shape} needs {count} values, got {array.size}")
    return array.reshape(shape)


def array_to_tensor(array: np.ndarray, proto: Any) -> None:
    """Fill ``proto`` (a TensorProto) from ``array`` as ``tensor_content``."""
    proto.dtype = DTYPES[dtype_name(array.dtype)][0]
    for d in array.shape:
        proto.tensor_shape.dim.add().size = d
    proto.tensor_content = le_bytes(array)


# ----- REST: row and columnar JSON -----------------------------------------------------------------
def decode_b64(value: Any, depth: int = DEFAULT_LIMITS.max_json_depth + 2) -> Any:
    """Replace every ``{"b64": "..."}`` in ``value`` by its decoded bytes (400 on invalid base64, and on
    nesting deeper than ``depth`` levels: the body around the tensors adds two)."""
    if depth < 0 and isinstance(value, dict | list):
        raise InvalidInput("the body is nested too deeply")
    if isinstance(value, dict):
        if set(value) == {"b64"} and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII characters
                raise InvalidInput(f"invalid base64 value: {exc}") from None
        return {k: decode_b64(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_b64(v, depth - 1) for v in value]
    return value


def parse_predict(payload: Any, limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str | None, np.ndarray], bool]:
    """Inputs of a predict body and whether it used the row (``instances``) format."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"expected a JSON object, got {type(payload).__name__}")
    check_signature(payload.get("signature_name", SIGNATURE))
    if ("instances" in payload) == ("inputs" in payload):
        raise InvalidInput(
            "request must have exactly one of 'instances' (row format) or 'inputs' (columnar format)"
        )
    if "instances" in payload:
        instances = payload["instances"]
        if isinstance(instances, np.ndarray):  # numbers already read (service.protocols.tensor_json)
            return {None: json_to_array(instances, "instances", limits)}, True
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("'instances' must be a non-empty list")
        if isinstance(instances[0], dict):
            keys = set(instances[0])
            if not all(isinstance(i, dict) and set(i) == keys for i in instances):
                raise InvalidInput(f"every instance must name the same inputs {sorted(keys)}")
            limits.check_count("inputs", len(keys))
            return {k: json_to_array([i[k] for i in instances], k, limits) for k in keys}, True
        return {None: json_to_array(instances, "instances", limits)}, True
    inputs = payload["inputs"]
    if isinstance(inputs, dict):
        if not inputs:
            raise InvalidInput("'inputs' is an empty object")
        limits.check_count("inputs", len(inputs))
        return {k: json_to_array(v, k, limits) for k, v in inputs.items()}, False
    return {None: json_to_array(inputs, "inputs", limits)}, False


def format_outputs(outputs: dict[str, np.ndarray], row: bool) -> dict[str, Any]:
    """``{"predictions": ...}`` (row format) or ``{"outputs": ...}`` (columnar), as TF Serving answers."""
    if len(outputs) == 1:
        value: Any = next(iter(outputs.values()))
        return {"predictions": value} if row else {"outputs": value}
    if not row:
        return {"outputs": outputs}
    rows = len(next(iter(outputs.values())))
    return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(rows)]}
