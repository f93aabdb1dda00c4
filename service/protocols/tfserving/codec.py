"""TF Serving tensors: ``TensorProto`` <-> NumPy (gRPC) and the REST row/columnar JSON formats."""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

from service.errors import InvalidInput
from service.protocols.common import from_le_bytes, le_bytes
from service.protocols.json import json_to_array
from service.protocols.tfserving.spec import DTYPE_BY_NUMBER, DTYPES, SIGNATURE, check_signature, dtype_name

# The typed ``*_val`` field of a TensorProto that carries each dtype's values.
_VALUE_FIELDS = {
    "DT_FLOAT": "float_val", "DT_DOUBLE": "double_val", "DT_INT32": "int_val", "DT_UINT8": "int_val",
    "DT_INT16": "int_val", "DT_INT8": "int_val", "DT_INT64": "int64_val", "DT_BOOL": "bool_val",
    "DT_UINT16": "int_val", "DT_UINT32": "uint32_val", "DT_UINT64": "uint64_val",
}  # fmt: skip


# ----- gRPC: TensorProto ---------------------------------------------------------------------------
def tensor_to_array(name: str, proto: Any) -> np.ndarray:
    """A TensorProto as an array (``tensor_content`` bytes or the typed ``*_val`` fields)."""
    if proto.dtype not in DTYPE_BY_NUMBER:
        raise InvalidInput(
            f"input {name!r}: TensorProto dtype {proto.dtype} is not a numeric type this server takes"
        )
    dtype_enum, dtype = DTYPE_BY_NUMBER[proto.dtype]
    shape = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: tensor_shape {shape} has a negative dimension")
    count = math.prod(shape)
    if proto.tensor_content:
        return from_le_bytes(name, proto.tensor_content, dtype, shape)
    if dtype_enum == "DT_HALF":
        array = np.asarray(proto.half_val, dtype=np.uint16).view(np.float16)
    else:
        array = np.asarray(getattr(proto, _VALUE_FIELDS[dtype_enum]), dtype=dtype)
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
def decode_b64(value: Any) -> Any:
    """Replace every ``{"b64": "..."}`` in ``value`` by its decoded bytes (400 on invalid base64)."""
    if isinstance(value, dict):
        if set(value) == {"b64"} and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII characters
                raise InvalidInput(f"invalid base64 value: {exc}") from None
        return {k: decode_b64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_b64(v) for v in value]
    return value


def parse_predict(payload: Any) -> tuple[dict[str | None, np.ndarray], bool]:
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
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("'instances' must be a non-empty list")
        if isinstance(instances[0], dict):
            keys = set(instances[0])
            if not all(isinstance(i, dict) and set(i) == keys for i in instances):
                raise InvalidInput(f"every instance must name the same inputs {sorted(keys)}")
            return {k: json_to_array([i[k] for i in instances], k) for k in keys}, True
        return {None: json_to_array(instances, "instances")}, True
    inputs = payload["inputs"]
    if isinstance(inputs, dict):
        return {k: json_to_array(v, k) for k, v in inputs.items()}, False
    return {None: json_to_array(inputs, "inputs")}, False


def format_outputs(outputs: dict[str, np.ndarray], row: bool) -> dict[str, Any]:
    """``{"predictions": ...}`` (row format) or ``{"outputs": ...}`` (columnar), as TF Serving answers."""
    if len(outputs) == 1:
        value: Any = next(iter(outputs.values()))
        return {"predictions": value} if row else {"outputs": value}
    if not row:
        return {"outputs": outputs}
    rows = len(next(iter(outputs.values())))
    return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(rows)]}
