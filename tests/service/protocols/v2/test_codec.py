"""KServe V2 tensors in-process: JSON and binary REST bodies, real gRPC messages, and the spec."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from tritonclient.grpc import service_pb2

from service import __version__
from service.errors import InvalidInput
from service.protocols.v2.codec import (
    decode_grpc_inputs,
    decode_inputs,
    encode_response,
    fill_grpc_outputs,
    requested_outputs,
    split_body,
)
from service.protocols.v2.spec import (
    CONTENTS_FIELDS,
    DATATYPES,
    EXTENSIONS,
    SERVER_NAME,
    datatype,
    server_metadata,
)

NO_BINARY = memoryview(b"")


def le(values: list[Any], dtype: str) -> bytes:
    return np.asarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()


def sample(name: str) -> np.ndarray:
    dtype = DATATYPES[name]
    if name == "BOOL":
        return np.array([[True, False, True], [False, True, True]])
    if dtype.kind == "f":
        return np.array([[0.5, -1.5, 2.0], [4.25, 0.0, -8.0]], dtype)
    low = 0 if dtype.kind == "u" else -3
    high = int(np.iinfo(dtype).max)  # UINT64's maximum, above INT64's range, mixed with small values
    return np.array([[low, 1, 2], [3, 4, high]], dtype)


# ----- spec ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DATATYPES))
def test_datatype_of_every_dtype(name: str) -> None:
    dtype = DATATYPES[name]
    assert datatype(dtype) == name
    assert datatype(dtype.newbyteorder("=")) == name
    assert datatype(dtype.newbyteorder(">")) == name
    assert datatype(dtype.newbyteorder("=").name) == name


def test_datatype_of_string_names() -> None:
    assert [datatype(n) for n in ("float32", "float64", "int32", "int64", "bool", "float16")] == [
        "FP32", "FP64", "INT32", "INT64", "BOOL", "FP16",
    ]  # fmt: skip


def test_contents_fields_exist_on_the_real_message() -> None:
    fields = set(service_pb2.InferTensorContents.DESCRIPTOR.fields_by_name)
    assert set(CONTENTS_FIELDS) == set(DATATYPES) - {"FP16"}
    assert set(CONTENTS_FIELDS.values()) <= fields


def test_server_metadata() -> None:
    meta = server_metadata()
    assert set(meta) == {"name", "version", "extensions"}
    assert meta == {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}
    assert "binary_tensor_data" in meta["extensions"]
    service_pb2.ServerMetadataResponse(**meta)  # the gRPC message takes the same document


# ----- split_body ----------------------------------------------------------------------------------
def test_split_body_json_only() -> None:
    payload, rest = split_body(b'{"inputs": []}', None)
    assert payload == {"inputs": []} and bytes(rest) == b""


def test_split_body_with_header_length() -> None:
    head = b'{"inputs": [1]}'
    payload, rest = split_body(head + b"\x01\x02\x03", str(len(head)))
    assert payload == {"inputs": [1]} and bytes(rest) == b"\x01\x02\x03"
    payload, rest = split_body(head, str(len(head)))
    assert payload == {"inputs": [1]} and len(rest) == 0


@pytest.mark.parametrize(
    ("body", "length", "fragment"),
    [
        (b"", None, "empty request body"),
        (b"{bad", None, "malformed JSON"),
        (b"[1, 2]", None, "expected a JSON object, got list"),
        (b'"x"', None, "expected a JSON object, got str"),
        (b'{"a": 1}xx', "abc", "must be ASCII digits, got 'abc'"),
        (b'{"a": 1}xx', "1.5", "must be ASCII digits, got '1.5'"),
        (b'{"a": 1}xx', "", "must be ASCII digits, got ''"),
        (b'{"a": 1}xx', "0", "Inference-Header-Content-Length 0 is outside the body of 10 bytes"),
        (b'{"a": 1}xx', "-3", "must be ASCII digits, got '-3'"),
        (b'{"a": 1}xx', "11", "11 is outside the body of 10 bytes"),
        (b'{"a": 1}xx', "4", "malformed JSON"),  # the header cut in the middle
        (b'{"a": 1}xx', "10", "malformed JSON"),  # binary bytes read as JSON
        (b"[1]xx", "3", "expected a JSON object, got list"),
    ],
)
def test_split_body_rejects(body: bytes, length: str | None, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        split_body(body, length)


# ----- decode_inputs -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DATATYPES))
def test_decode_json_data_for_every_datatype(name: str) -> None:
    want = sample(name)
    for data in (want.reshape(-1).tolist(), want.tolist()):  # flat or nested data
        arrays = decode_inputs(
            {"inputs": [{"name": "x", "shape": [2, 3], "datatype": name, "data": data}]}, NO_BINARY
        )
        assert arrays["x"].dtype == DATATYPES[name] and arrays["x"].shape == (2, 3)
        np.testing.assert_array_equal(arrays["x"], want)


@pytest.mark.parametrize("name", sorted(DATATYPES))
def test_decode_binary_data_for_every_datatype(name: str) -> None:
    want = sample(name)
    raw = want.astype(DATATYPES[name]).tobytes()
    tensor = {"name": "x", "shape": [2, 3], "datatype": name, "parameters": {"binary_data_size": len(raw)}}
    arrays = decode_inputs({"inputs": [tensor]}, memoryview(raw))
    np.testing.assert_array_equal(arrays["x"], want)
    assert arrays["x"].shape == (2, 3)


def test_decode_mixed_json_and_binary_inputs_in_order() -> None:
    payload = {
        "inputs": [
            {"name": "a", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
            {"name": "b", "shape": [1, 2], "datatype": "INT64", "data": [[5, 6]]},
            {"name": "c", "shape": [3], "datatype": "INT16", "parameters": {"binary_data_size": 6}},
        ]
    }
    arrays = decode_inputs(payload, memoryview(le([1.5, 2.5], "f4") + le([7, -8, 9], "i2")))
    np.testing.assert_array_equal(arrays["a"], [1.5, 2.5])
    np.testing.assert_array_equal(arrays["b"], [[5, 6]])
    np.testing.assert_array_equal(arrays["c"], [7, -8, 9])
    assert arrays["c"].dtype == np.int16


def test_uint64_max_alone_decodes_from_json_and_typed_contents() -> None:
    top = int(np.iinfo(np.uint64).max)
    got = decode_inputs(
        {"inputs": [{"name": "x", "shape": [1], "datatype": "UINT64", "data": [top]}]}, NO_BINARY
    )
    assert got["x"].dtype == np.uint64 and int(got["x"][0]) == top
    request = grpc_request(("x", "UINT64", [1]))
    request.inputs[0].contents.uint64_contents.append(top)
    assert int(decode_grpc_inputs(request)["x"][0]) == top


def test_decode_integral_floats_for_int_datatypes_and_ints_for_float_datatypes() -> None:
    payload = {
        "inputs": [
            {"name": "f", "shape": [2], "datatype": "FP32", "data": [1, 2]},
            {"name": "i", "shape": [1], "datatype": "INT32", "data": [3]},
        ]
    }
    arrays = decode_inputs(payload, NO_BINARY)
    assert arrays["f"].dtype == np.float32 and arrays["i"].dtype == np.int32


def tensor(**kw: Any) -> dict[str, Any]:
    return {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0], **kw}


@pytest.mark.parametrize(
    ("payload", "binary", "fragment"),
    [
        ({}, b"", "field 'inputs' must be a non-empty list"),
        ({"inputs": []}, b"", "field 'inputs' must be a non-empty list"),
        ({"inputs": {"x": [1]}}, b"", "field 'inputs' must be a non-empty list"),
        ({"inputs": [5]}, b"", "each input needs a 'name'"),
        ({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}, b"", "each input needs a 'name'"),
        ({"inputs": [tensor(name=3)]}, b"", "each input needs a 'name'"),
        ({"inputs": [tensor(shape=None)]}, b"", "input 'x': 'shape' must be a list of non-negative integers"),
        (
            {"inputs": [tensor(shape=[-1])]},
            b"",
            "'shape' must be a list of non-negative integers, got \\[-1\\]",
        ),
        ({"inputs": [tensor(shape=[2.0])]}, b"", "'shape' must be a list of non-negative integers"),
        ({"inputs": [tensor(shape=[True, True])]}, b"", "'shape' must be a list of non-negative integers"),
        ({"inputs": [tensor(shape="2")]}, b"", "'shape' must be a list"),
        ({"inputs": [tensor(datatype="BYTES")]}, b"", "datatype 'BYTES' is not supported"),
        ({"inputs": [tensor(datatype="fp32")]}, b"", "datatype 'fp32' is not supported"),
        ({"inputs": [tensor(datatype=None)]}, b"", "datatype None is not supported"),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]},
            b"",
            "neither 'data' nor parameters.binary_data_size",
        ),
        ({"inputs": [tensor(data=[1.0, 2.0, 3.0])]}, b"", r"input 'x': shape \[2\] needs 2 values, got 3"),
        ({"inputs": [tensor(shape=[2, 2])]}, b"", r"shape \[2, 2\] needs 4 values, got 2"),
        ({"inputs": [tensor(data=["a", "b"])]}, b"", "input 'x': expected numbers, got strings"),
        ({"inputs": [tensor(data=[[1.0], [2.0, 3.0]])]}, b"", "rows have different lengths"),
        ({"inputs": [tensor(data=None)]}, b"", "expected numbers"),
        # BOOL takes only true/false, and numbers only for the other datatypes
        (
            {"inputs": [tensor(datatype="BOOL", data=[1, 0])]},
            b"",
            "datatype BOOL needs true/false values, got int64",
        ),
        ({"inputs": [tensor(datatype="BOOL", data=[True, None])]}, b"", "BOOL needs true/false values"),
        ({"inputs": [tensor(datatype="BOOL", data=["true", "false"])]}, b"", "BOOL needs true/false values"),
        ({"inputs": [tensor(datatype="BOOL", data=[True])]}, b"", r"shape \[2\] needs 2 values, got 1"),
        ({"inputs": [tensor(datatype="INT32", data=[True, False])]}, b"", "expected numbers, got booleans"),
        # fractional values for integer datatypes
        (
            {"inputs": [tensor(datatype="INT32", data=[1.5, 2.0])]},
            b"",
            "datatype INT32 needs integers, got fractional",
        ),
        ({"inputs": [tensor(datatype="UINT8", data=[1, 2.5])]}, b"", "datatype UINT8 needs integers"),
        ({"inputs": [tensor(datatype="INT64", data=[1.0, 2.0])]}, b"", "INT64 needs integers"),
        # binary sizes that do not add up
        (
            {"inputs": [tensor(parameters={"binary_data_size": 8})]},
            b"\x00" * 4,
            "binary_data_size 8 but only 4 bytes",
        ),
        (
            {"inputs": [tensor(parameters={"binary_data_size": 4})]},
            b"\x00" * 4,
            r"input 'x': 4 bytes do not fit shape \[2\]",
        ),
        (
            {"inputs": [tensor(parameters={"binary_data_size": 8})]},
            b"\x00" * 12,
            "binary data is 12 bytes but the inputs declare 8",
        ),
        ({"inputs": [tensor()]}, b"\x00" * 8, "binary data is 8 bytes but the inputs declare 0"),
        ({"inputs": [tensor(parameters={"binary_data_size": "8"})]}, b"\x00" * 8, "binary_data_size '8'"),
        ({"inputs": [tensor(parameters={"binary_data_size": 8.0})]}, b"\x00" * 8, "binary_data_size 8.0"),
        (
            {"inputs": [tensor(parameters={"binary_data_size": -4})]},
            b"\x00" * 8,
            "binary_data_size -4 but only 8",
        ),
        (
            {"inputs": [tensor(shape=[1], parameters={"binary_data_size": True})]},
            b"\x00" * 4,
            "binary_data_size True",
        ),
        (
            {
                "inputs": [
                    tensor(parameters={"binary_data_size": 8}),
                    tensor(name="y", parameters={"binary_data_size": 8}),
                ]
            },
            b"\x00" * 12,
            "input 'y': binary_data_size 8 but only 4 bytes follow",
        ),
    ],
)
def test_decode_inputs_rejects(payload: dict[str, Any], binary: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        decode_inputs(payload, memoryview(binary))


def test_decode_inputs_binary_size_zero_for_an_empty_tensor() -> None:
    arrays = decode_inputs(
        {
            "inputs": [
                {"name": "x", "shape": [0, 4], "datatype": "FP32", "parameters": {"binary_data_size": 0}}
            ]
        },
        NO_BINARY,
    )
    assert arrays["x"].shape == (0, 4)


# ----- requested_outputs ---------------------------------------------------------------------------
def test_requested_outputs_default_is_all_json() -> None:
    assert requested_outputs({}) == (None, {"*": False})
    assert requested_outputs({"parameters": None, "outputs": None}) == (None, {"*": False})
    assert requested_outputs({"parameters": {"binary_data_output": True}}) == (None, {"*": True})


def test_requested_outputs_per_output_binary_flags() -> None:
    names, binary = requested_outputs(
        {
            "parameters": {"binary_data_output": True},
            "outputs": [
                {"name": "a"},
                {"name": "b", "parameters": {"binary_data": False}},
                {"name": "c", "parameters": {}},
            ],
        }
    )
    assert names == ["a", "b", "c"] and binary == {"a": True, "b": False, "c": True}
    names, binary = requested_outputs(
        {"outputs": [{"name": "a", "parameters": {"binary_data": True}}, {"name": "b"}]}
    )
    assert names == ["a", "b"] and binary == {"a": True, "b": False}
    assert requested_outputs({"outputs": []}) == ([], {})


@pytest.mark.parametrize(
    "outputs", ["y", {"name": "y"}, ["y"], [{"name": 1}], [{"parameters": {}}], [{"name": "y"}, None]]
)
def test_requested_outputs_rejects_malformed(outputs: Any) -> None:
    with pytest.raises(InvalidInput, match=r"field 'outputs' must be a list of \{'name': \.\.\.\} objects"):
        requested_outputs({"outputs": outputs})


# ----- encode_response -----------------------------------------------------------------------------
HEADER = {"model_name": "m", "model_version": "2", "id": "req-1"}


def test_encode_response_json_round_trip() -> None:
    outputs = {"y": np.array([[0.5, 1.5], [2.5, 3.5]], np.float32), "k": np.array([1, 2], np.int64)}
    body, length = encode_response(HEADER, outputs, {"*": False})
    assert length is None
    doc = orjson.loads(body)
    assert {k: doc[k] for k in HEADER} == HEADER
    assert doc["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [0.5, 1.5, 2.5, 3.5]},
        {"name": "k", "datatype": "INT64", "shape": [2], "data": [1, 2]},
    ]


@pytest.mark.parametrize("name", sorted(DATATYPES))
def test_encode_response_binary_round_trip_for_every_datatype(name: str) -> None:
    array = sample(name)
    body, length = encode_response(HEADER, {"y": array}, {"*": True})
    assert length is not None
    # what a client does: split on the header length, then decode with the same decoder as requests
    head, rest = split_body(body, str(length))
    (entry,) = head["outputs"]
    assert entry["datatype"] == name and entry["shape"] == [2, 3] and "data" not in entry
    assert entry["parameters"] == {"binary_data_size": array.size * DATATYPES[name].itemsize}
    back = decode_inputs({"inputs": head["outputs"]}, rest)["y"]
    np.testing.assert_array_equal(back, array)


def test_encode_response_mixed_binary_and_json() -> None:
    outputs = {
        "a": np.array([1.0, 2.0], np.float64),
        "b": np.array([[3, 4]], np.int32),
        "c": np.array([True, False]),
    }
    body, length = encode_response(HEADER, outputs, {"a": True, "b": False, "c": True, "*": False})
    assert length is not None
    head = orjson.loads(body[:length])
    assert [("data" in o, o.get("parameters")) for o in head["outputs"]] == [
        (False, {"binary_data_size": 16}),
        (True, None),
        (False, {"binary_data_size": 2}),
    ]
    assert head["outputs"][1]["data"] == [3, 4]
    assert body[length:] == le([1.0, 2.0], "f8") + b"\x01\x00"
    back = decode_inputs({"inputs": head["outputs"]}, memoryview(body)[length:])
    np.testing.assert_array_equal(back["a"], outputs["a"])
    np.testing.assert_array_equal(back["b"], outputs["b"])
    np.testing.assert_array_equal(back["c"], outputs["c"])


def test_encode_response_name_flag_overrides_the_default() -> None:
    body, length = encode_response({}, {"y": np.array([1.0], np.float32)}, {"y": False, "*": True})
    assert length is None and orjson.loads(body)["outputs"][0]["data"] == [1.0]


# ----- gRPC ----------------------------------------------------------------------------------------
def grpc_request(*tensors: tuple[str, str, list[int]]) -> Any:
    request = service_pb2.ModelInferRequest(model_name="m")
    for name, dtype_name, shape in tensors:
        request.inputs.add(name=name, datatype=dtype_name, shape=shape)
    return request


@pytest.mark.parametrize("name", sorted(DATATYPES))
def test_decode_grpc_raw_contents_for_every_datatype(name: str) -> None:
    array = sample(name)
    request = grpc_request(("x", name, [2, 3]))
    request.raw_input_contents.append(array.astype(DATATYPES[name]).tobytes())
    request = service_pb2.ModelInferRequest.FromString(request.SerializeToString())
    got = decode_grpc_inputs(request)["x"]
    assert got.shape == (2, 3) and got.dtype == DATATYPES[name]
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("name", sorted(CONTENTS_FIELDS))
def test_decode_grpc_typed_contents_for_every_datatype(name: str) -> None:
    array = sample(name)
    request = grpc_request(("x", name, [2, 3]))
    getattr(request.inputs[0].contents, CONTENTS_FIELDS[name]).extend(array.reshape(-1).tolist())
    got = decode_grpc_inputs(request)["x"]
    assert got.shape == (2, 3) and got.dtype == DATATYPES[name]
    np.testing.assert_array_equal(got, array)


def test_decode_grpc_several_inputs() -> None:
    request = grpc_request(("a", "FP32", [1, 2]), ("b", "INT64", [2]))
    request.raw_input_contents.extend([le([1.0, 2.0], "f4"), le([3, 4], "i8")])
    arrays = decode_grpc_inputs(request)
    np.testing.assert_array_equal(arrays["a"], [[1.0, 2.0]])
    np.testing.assert_array_equal(arrays["b"], [3, 4])


def grpc_case(kind: str) -> Any:
    if kind == "raw count mismatch":
        request = grpc_request(("a", "FP32", [1]), ("b", "FP32", [1]))
        request.raw_input_contents.append(le([1.0], "f4"))
    elif kind == "too many raw":
        request = grpc_request(("a", "FP32", [1]))
        request.raw_input_contents.extend([le([1.0], "f4"), le([1.0], "f4")])
    elif kind == "raw size":
        request = grpc_request(("a", "FP32", [2]))
        request.raw_input_contents.append(b"\x00" * 7)
    elif kind == "typed count":
        request = grpc_request(("a", "INT32", [2, 2]))
        request.inputs[0].contents.int_contents.extend([1, 2, 3])
    elif kind == "no contents":
        request = grpc_request(("a", "FP32", [2]))
    elif kind == "fp16 typed":
        request = grpc_request(("a", "FP16", [1]))
        request.inputs[0].contents.fp32_contents.append(1.0)
    elif kind == "wrong field":
        request = grpc_request(("a", "INT32", [2]))
        request.inputs[0].contents.fp32_contents.extend([1.0, 2.0])
    elif kind == "bool from ints":
        request = grpc_request(("a", "BOOL", [2]))
        request.inputs[0].contents.int_contents.extend([1, 0])
    elif kind == "negative dim":
        request = grpc_request(("a", "FP32", [-1, 2]))
        request.inputs[0].contents.fp32_contents.extend([1.0, 2.0])
    elif kind == "bytes":
        request = grpc_request(("a", "BYTES", [1]))
        request.inputs[0].contents.bytes_contents.append(b"x")
    else:
        raise AssertionError(kind)
    return request


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("raw count mismatch", "1 raw_input_contents for 2 inputs"),
        ("too many raw", "2 raw_input_contents for 1 inputs"),
        ("raw size", r"input 'a': 7 bytes do not fit shape \[2\] of float32"),
        ("typed count", r"input 'a': shape \[2, 2\] needs 4 values, got 3"),
        ("no contents", r"shape \[2\] needs 2 values, got 0"),
        ("fp16 typed", "input 'a': FP16 needs raw_input_contents"),
        ("wrong field", r"INT32 values go in contents.int_contents, got \[.fp32_contents.\]"),
        ("bool from ints", "BOOL values go in contents.bool_contents"),
        ("negative dim", "'shape' must be a list of non-negative integers"),
        ("bytes", "datatype 'BYTES' is not supported"),
    ],
)
def test_decode_grpc_inputs_rejects(kind: str, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        decode_grpc_inputs(grpc_case(kind))


@pytest.mark.parametrize("name", sorted(DATATYPES))
def test_fill_grpc_outputs_round_trip(name: str) -> None:
    array = sample(name)
    response = service_pb2.ModelInferResponse(model_name="m")
    fill_grpc_outputs(response, {"y": array, "n": np.array([7], np.int32)})
    response = service_pb2.ModelInferResponse.FromString(response.SerializeToString())
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("y", name, [2, 3]),
        ("n", "INT32", [1]),
    ]
    assert response.raw_output_contents[1] == le([7], "i4")
    back = np.frombuffer(response.raw_output_contents[0], DATATYPES[name]).reshape(2, 3)
    np.testing.assert_array_equal(back, array)


def test_fill_grpc_outputs_writes_big_endian_arrays_little_endian() -> None:
    response = service_pb2.ModelInferResponse()
    fill_grpc_outputs(response, {"y": np.array([1.0, 2.0], ">f4")})
    assert response.outputs[0].datatype == "FP32"
    assert response.raw_output_contents[0] == le([1.0, 2.0], "f4")
