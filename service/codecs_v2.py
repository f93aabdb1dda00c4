"""KServe V2 / Open Inference Protocol tensors: JSON data and the binary tensor extension.

Binary layout (both directions): the JSON header is the first ``Inference-Header-Content-Length``
bytes of the body; each tensor with ``parameters.binary_data_size`` follows, in order, as little-endian
row-major bytes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.codecs import dumps, json_to_array, loads
from service.errors import InvalidInput

V2_TO_NUMPY: dict[str, np.dtype[Any]] = {
    name: np.dtype(dt).newbyteorder("<")
    for name, dt in {
        "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
        "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
        "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    }.items()
}  # fmt: skip
NUMPY_TO_V2 = {dt.newbyteorder("=").str: name for name, dt in V2_TO_NUMPY.items()}
NUMPY_TO_V2.update({np.dtype(dt).str: name for name, dt in V2_TO_NUMPY.items()})


def v2_datatype(dtype: np.dtype[Any] | str) -> str:
    """V2 datatype name of a NumPy dtype (``float32`` -> ``FP32``)."""
    return NUMPY_TO_V2[np.dtype(dtype).str]


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON header and the binary remainder of a V2 request body."""
    if header_length is None:
        payload = loads(body)
        rest = memoryview(b"")
    else:
        try:
            size = int(header_length)
        except ValueError:
            raise InvalidInput(
                f"Inference-Header-Content-Length must be an integer, got {header_length!r}"
            ) from None
        if not 0 < size <= len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length {size} is outside the body of {len(body)} bytes"
            )
        payload = loads(body[:size])
        rest = memoryview(body)[size:]
    if not isinstance(payload, dict):
        raise InvalidInput(f"expected a JSON object, got {type(payload).__name__}")
    return payload, rest


def decode_inputs(payload: dict[str, Any], binary: memoryview) -> dict[str | None, np.ndarray]:
    """``inputs`` of a V2 request as arrays of their declared datatypes and shapes."""
    tensors = payload.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput("field 'inputs' must be a non-empty list of tensors")
    arrays: dict[str | None, np.ndarray] = {}
    offset = 0
    for tensor in tensors:
        array, used = _decode_tensor(tensor, binary[offset:])
        offset += used
        arrays[tensor["name"]] = array
    if offset != len(binary):
        raise InvalidInput(f"binary data is {len(binary)} bytes but the inputs declare {offset}")
    return arrays


def _decode_tensor(tensor: Any, binary: memoryview) -> tuple[np.ndarray, int]:
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise InvalidInput("each input needs a 'name' (string), 'shape', 'datatype' and 'data'")
    name = tensor["name"]
    shape, datatype = check_header(name, tensor.get("shape"), tensor.get("datatype"))
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size > len(binary):
            raise InvalidInput(
                f"input {name!r}: binary_data_size {size!r} but only {len(binary)} bytes follow the header"
            )
        return array_from_bytes(name, binary[:size], datatype, shape), size
    if "data" not in tensor:
        raise InvalidInput(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
    values = json_to_array(tensor["data"], name) if datatype != "BOOL" else np.asarray(tensor["data"])
    return array_from_values(name, values, datatype, shape), 0


def array_from_bytes(name: str, raw: bytes | memoryview, datatype: str, shape: list[int]) -> np.ndarray:
    """A tensor from little-endian row-major bytes (V2 binary extension, gRPC raw contents)."""
    dtype = V2_TO_NUMPY[datatype]
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"input {name!r}: binary_data_size {len(raw)} does not fit shape {shape} of {datatype} "
            f"({expected} bytes expected)"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def array_from_values(name: str, values: np.ndarray, datatype: str, shape: list[int]) -> np.ndarray:
    """A tensor from decoded values (JSON ``data``, gRPC typed contents), checked against ``shape``."""
    count = math.prod(shape)
    if datatype == "BOOL" and values.dtype.kind != "b":
        raise InvalidInput(f"input {name!r}: datatype BOOL needs true/false values, got {values.dtype}")
    if values.size != count:
        raise InvalidInput(f"input {name!r}: shape {shape} needs {count} values, got {values.size}")
    if values.dtype.kind == "f" and V2_TO_NUMPY[datatype].kind in "iu":
        raise InvalidInput(f"input {name!r}: datatype {datatype} needs integers, got fractional numbers")
    return values.astype(V2_TO_NUMPY[datatype], copy=False).reshape(shape)


def check_header(name: str, shape: Any, datatype: Any) -> tuple[list[int], str]:
    """400 unless ``shape`` is a list of non-negative ints and ``datatype`` a supported numeric type;
    returns both, typed."""
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInput(f"input {name!r}: 'shape' must be a list of non-negative integers, got {shape!r}")
    if datatype not in V2_TO_NUMPY:
        raise InvalidInput(
            f"input {name!r}: datatype {datatype!r} is not supported; expected one of {sorted(V2_TO_NUMPY)}"
        )
    return shape, str(datatype)


def requested_outputs(payload: dict[str, Any]) -> tuple[list[str] | None, dict[str, bool]]:
    """Requested output names (None = all) and which of them go back as binary data."""
    default_binary = bool((payload.get("parameters") or {}).get("binary_data_output", False))
    outputs = payload.get("outputs")
    if outputs is None:
        return None, {"*": default_binary}
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise InvalidInput("field 'outputs' must be a list of {'name': ...} objects")
    binary = {
        o["name"]: bool((o.get("parameters") or {}).get("binary_data", default_binary)) for o in outputs
    }
    return [o["name"] for o in outputs], binary


def encode_response(
    header: dict[str, Any], outputs: dict[str, np.ndarray], binary: dict[str, bool]
) -> tuple[bytes, int | None]:
    """Body and (for binary outputs) the JSON header length of a V2 infer response."""
    tensors, blobs = [], []
    for name, array in outputs.items():
        entry: dict[str, Any] = {
            "name": name,
            "datatype": v2_datatype(array.dtype),
            "shape": list(array.shape),
        }
        if binary.get(name, binary.get("*", False)):
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = array.reshape(-1)
        tensors.append(entry)
    head = dumps({**header, "outputs": tensors})
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)
