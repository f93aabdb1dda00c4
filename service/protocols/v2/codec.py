"""KServe V2 tensors: JSON ``data``, the binary tensor extension (REST) and gRPC tensors.

Binary layout (both directions): the JSON header is the first ``Inference-Header-Content-Length``
bytes of the body; each tensor with ``parameters.binary_data_size`` follows, in order, as little-endian
row-major bytes. gRPC carries the same bytes in ``raw_input_contents`` / ``raw_output_contents``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.errors import InvalidInput
from service.limits import DEFAULT_LIMITS, Limits
from service.protocols.common import check_int_range, from_le_bytes, le_bytes, parse_timeout
from service.protocols.json import dumps, json_to_array, loads, loads_with_tensors
from service.protocols.tensor_json import Path
from service.protocols.v2.classification import BYTES, bytes_tensor
from service.protocols.v2.spec import CONTENTS_FIELDS, DATATYPES, datatype

Arrays = dict[str | None, np.ndarray]
_ANY_KIND = frozenset("biufcUSO")
_FIELD_DTYPES = {
    "bool_contents": np.bool_, "int_contents": np.int32, "int64_contents": np.int64,
    "uint_contents": np.uint32, "uint64_contents": np.uint64, "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}  # fmt: skip
"""The value type of each typed ``contents`` field, so values are read exactly (then range-checked)."""


def parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    """``obj["parameters"]`` (absent or null = ``{}``); 400 unless it is an object."""
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidInput(f"{where}: 'parameters' must be an object, got {type(params).__name__}")
    return params


def timeout_s(payload: dict[str, Any]) -> float | None:
    """The request's ``parameters.timeout`` (microseconds, as Triton reads it) in seconds, or ``None``."""
    raw = parameters(payload, "request").get("timeout")
    return None if raw is None else parse_timeout(raw, 1e-6, "parameters.timeout (microseconds)")


def grpc_timeout_s(request: Any) -> float | None:
    """``ModelInferRequest.parameters["timeout"]`` (microseconds, an int64 or uint64 parameter) in seconds."""
    if "timeout" not in request.parameters:
        return None
    param = request.parameters["timeout"]
    kind = param.WhichOneof("parameter_choice")
    raw = getattr(param, kind) if kind in ("int64_param", "uint64_param") else repr(param).strip()
    return parse_timeout(raw, 1e-6, "parameters['timeout'] (int64 microseconds)")


# ----- one tensor, whatever the transport ----------------------------------------------------------
def check_header(
    name: str, shape: Any, dtype_name: Any, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[int], str]:
    """400 unless ``shape`` is a list of non-negative ints and ``dtype_name`` a supported numeric
    datatype; 413 when the declared shape is over the limits (nothing is allocated yet); returns both."""
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInput(f"input {name!r}: 'shape' must be a list of non-negative integers, got {shape!r}")
    if not isinstance(dtype_name, str) or dtype_name not in DATATYPES:
        raise InvalidInput(
            f"input {name!r}: datatype {dtype_name!r} is not supported; expected one of {sorted(DATATYPES)}"
        )
    limits.check_shape(name, shape)
    return shape, str(dtype_name)


def array_from_bytes(name: str, raw: bytes | memoryview, dtype_name: str, shape: list[int]) -> np.ndarray:
    """A tensor from little-endian row-major bytes (V2 binary extension, gRPC raw contents)."""
    return from_le_bytes(name, raw, DATATYPES[dtype_name], shape)


def array_from_values(name: str, values: np.ndarray, dtype_name: str, shape: list[int]) -> np.ndarray:
    """A tensor from decoded values (JSON ``data``, gRPC typed contents), checked against ``shape``."""
    count = math.prod(shape)
    if dtype_name == "BOOL" and values.dtype.kind != "b":
        raise InvalidInput(f"input {name!r}: datatype BOOL needs true/false values, got {values.dtype}")
    if values.size != count:
        raise InvalidInput(f"input {name!r}: shape {shape} needs {count} values, got {values.size}")
    target = DATATYPES[dtype_name]
    if values.dtype.kind == "f" and target.kind in "iu" and values.size:
        raise InvalidInput(f"input {name!r}: datatype {dtype_name} needs integers, got fractional numbers")
    check_int_range(name, values, target, dtype_name)
    return values.astype(target, copy=False).reshape(shape)


# ----- REST: JSON and binary bodies ----------------------------------------------------------------
def split_body(
    body: bytes | bytearray, header_length: str | None, limits: Limits = DEFAULT_LIMITS
) -> tuple[dict[str, Any], memoryview]:
    """The JSON header and the binary remainder of a V2 request body."""
    if header_length is None:
        payload = loads_with_tensors(body, _is_tensor, limits)
        rest = memoryview(b"")
    else:
        if not (header_length.isascii() and header_length.isdigit()):
            raise InvalidInput(f"Inference-Header-Content-Length must be ASCII digits, got {header_length!r}")
        size = int(header_length)
        if not 0 < size <= len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length {size} is outside the body of {len(body)} bytes"
            )
        payload = loads(body[:size])
        rest = memoryview(body)[size:]
    if not isinstance(payload, dict):
        raise InvalidInput(f"expected a JSON object, got {type(payload).__name__}")
    return payload, rest


def _is_tensor(path: Path) -> bool:
    """An input's ``data``."""
    return len(path) == 3 and path[0] == "inputs" and path[2] == "data"


def decode_inputs(payload: dict[str, Any], binary: memoryview, limits: Limits = DEFAULT_LIMITS) -> Arrays:
    """``inputs`` of a V2 REST request as arrays of their declared datatypes and shapes."""
    tensors = payload.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput("field 'inputs' must be a non-empty list of tensors")
    limits.check_count("inputs", len(tensors))
    parameters(payload, "request")
    arrays: Arrays = {}
    offset = total = 0
    for tensor in tensors:
        array, used = _decode_tensor(tensor, binary[offset:], limits)
        offset += used
        if tensor["name"] in arrays:
            raise InvalidInput(f"input {tensor['name']!r} is given twice")
        arrays[tensor["name"]] = array
        total += array.size
        limits.check_total(total)
    if offset != len(binary):
        raise InvalidInput(f"binary data is {len(binary)} bytes but the inputs declare {offset}")
    return arrays


def _decode_tensor(tensor: Any, binary: memoryview, limits: Limits) -> tuple[np.ndarray, int]:
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise InvalidInput("each input needs a 'name' (string), 'shape', 'datatype' and 'data'")
    name = tensor["name"]
    limits.check_name("input", name)
    shape, dtype_name = check_header(name, tensor.get("shape"), tensor.get("datatype"), limits)
    size = parameters(tensor, f"input {name!r}").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(binary):
            raise InvalidInput(
                f"input {name!r}: binary_data_size {size!r} but only {len(binary)} bytes follow the header"
            )
        return array_from_bytes(name, binary[:size], dtype_name, shape), size
    if "data" not in tensor:
        raise InvalidInput(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
    if dtype_name == "BOOL":  # booleans, or anything else that array_from_values then names
        values = json_to_array(tensor["data"], name, limits, kinds=_ANY_KIND)
    else:
        values = json_to_array(tensor["data"], name, limits)
        if values.dtype.kind == "f" and DATATYPES[dtype_name].kind in "iu":
            values = _exact_integers(name, tensor["data"], values)
    return array_from_values(name, values, dtype_name, shape), 0


def _exact_integers(name: str, data: Any, values: np.ndarray) -> np.ndarray:
    """JSON integers NumPy read as float64 (one of them is beyond INT64, e.g. a large UINT64) as exact
    Python integers again; ``values`` unchanged when some of them are fractional numbers after all."""
    items = np.array(data, dtype=object).reshape(-1)
    if not items.size or not all(type(v) is int for v in items):
        return values
    low, high = min(items), max(items)
    if low < 0 or high > np.iinfo(np.uint64).max:
        raise InvalidInput(f"input {name!r}: integers from {low} to {high} fit no integer datatype")
    return items.astype(np.uint64).reshape(values.shape)


def requested_outputs(payload: dict[str, Any]) -> tuple[list[str] | None, dict[str, bool]]:
    """Requested output names (None = all) and which of them go back as binary data."""
    default_binary = bool(parameters(payload, "request").get("binary_data_output", False))
    outputs = payload.get("outputs")
    if outputs is None:
        return None, {"*": default_binary}
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise InvalidInput("field 'outputs' must be a list of {'name': ...} objects")
    binary = {
        o["name"]: bool(parameters(o, f"output {o['name']!r}").get("binary_data", default_binary))
        for o in outputs
    }
    return [o["name"] for o in outputs], binary


def encode_response(
    header: dict[str, Any], outputs: dict[str, np.ndarray], binary: dict[str, bool]
) -> tuple[bytes, int | None]:
    """Body and (for binary outputs) the JSON header length of a V2 infer response."""
    tensors, blobs = [], []
    for name, array in outputs.items():
        entry: dict[str, Any] = {"name": name, "datatype": _kind(array), "shape": list(array.shape)}
        if binary.get(name, binary.get("*", False)):
            raw = _raw(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif array.dtype == BYTES:  # classification strings
            entry["data"] = [item.decode() for item in array.reshape(-1)]
        else:
            entry["data"] = array.reshape(-1)
        tensors.append(entry)
    head = dumps({**header, "outputs": tensors})
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


def _kind(array: np.ndarray) -> str:
    """The V2 datatype of an output (``BYTES`` for classification strings)."""
    return "BYTES" if array.dtype == BYTES else datatype(array.dtype)


def _raw(array: np.ndarray) -> bytes:
    """An output's binary data / gRPC raw contents."""
    return bytes_tensor(array) if array.dtype == BYTES else le_bytes(array)


# ----- gRPC: ModelInferRequest / ModelInferResponse ------------------------------------------------
def decode_grpc_inputs(request: Any, limits: Limits = DEFAULT_LIMITS) -> Arrays:
    """The inputs of a ``ModelInferRequest``: ``raw_input_contents`` for all, or typed ``contents``
    (never both for one input: the protocol forbids it)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    limits.check_count("inputs", len(request.inputs))
    arrays: Arrays = {}
    total = 0
    for i, tensor in enumerate(request.inputs):
        limits.check_name("input", tensor.name)
        if tensor.name in arrays:
            raise InvalidInput(f"input {tensor.name!r} is given twice")
        shape, dtype_name = check_header(tensor.name, list(tensor.shape), tensor.datatype, limits)
        total += math.prod(shape)
        limits.check_total(total)
        if raw and tensor.HasField("contents") and tensor.contents.ByteSize():
            raise InvalidInput(
                f"input {tensor.name!r} has both contents and raw_input_contents; send one of them"
            )
        if raw:
            arrays[tensor.name] = array_from_bytes(tensor.name, raw[i], dtype_name, shape)
            continue
        field = CONTENTS_FIELDS.get(dtype_name)
        if field is None:
            raise InvalidInput(f"input {tensor.name!r}: {dtype_name} needs raw_input_contents")
        filled = [f.name for f, _ in tensor.contents.ListFields()]
        if filled and filled != [field]:
            raise InvalidInput(
                f"input {tensor.name!r}: {dtype_name} values go in contents.{field}, got {filled}"
            )
        values: np.ndarray = np.asarray(getattr(tensor.contents, field), dtype=_FIELD_DTYPES[field])
        arrays[tensor.name] = array_from_values(tensor.name, values, dtype_name, shape)
    return arrays


def fill_grpc_outputs(response: Any, outputs: dict[str, np.ndarray]) -> None:
    """Add ``outputs`` to a ``ModelInferResponse`` as tensors with raw little-endian contents."""
    for name, array in outputs.items():
        response.outputs.add(name=name, datatype=_kind(array), shape=list(array.shape))
        response.raw_output_contents.append(_raw(array))
