"""TF Serving tensors: real TensorProto messages <-> NumPy, and the REST row/columnar formats."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from service.errors import InvalidInput
from service.protocols.json import dumps, loads
from service.protocols.tfserving.codec import (
    array_to_tensor,
    decode_b64,
    format_outputs,
    parse_predict,
    tensor_to_array,
)
from service.protocols.tfserving.protos import tfserving_protos
from service.protocols.tfserving.spec import DTYPES

TensorProto = tfserving_protos().tensor_pb2.TensorProto

VALUE_FIELDS = {
    "DT_FLOAT": "float_val", "DT_DOUBLE": "double_val", "DT_INT32": "int_val", "DT_UINT8": "int_val",
    "DT_INT16": "int_val", "DT_INT8": "int_val", "DT_INT64": "int64_val", "DT_BOOL": "bool_val",
    "DT_UINT16": "int_val", "DT_UINT32": "uint32_val", "DT_UINT64": "uint64_val", "DT_HALF": "half_val",
}  # fmt: skip
"""The typed field TensorFlow's tensor.proto documents for each dtype (written out independently)."""


def proto(dtype: int, shape: list[int], **fields: Any) -> Any:
    message = TensorProto(dtype=dtype)
    for d in shape:
        message.tensor_shape.dim.add().size = d
    for field, value in fields.items():
        if field == "tensor_content":
            message.tensor_content = value
        else:
            getattr(message, field).extend(value)
    return message


def sample(dtype: np.dtype[Any]) -> np.ndarray:
    if dtype.kind == "b":
        return np.array([[True, False, True], [False, False, True]])
    if dtype.kind == "f":
        return np.array([[0.5, -1.25, 3.0], [100.0, 0.0, -7.5]], dtype=dtype)
    low = 0 if dtype.kind == "u" else -5
    return np.array([[low, 1, 2], [3, np.iinfo(dtype).max, 7]], dtype=dtype)


def test_value_field_table_covers_every_dtype() -> None:
    assert set(VALUE_FIELDS) == set(DTYPES)
    assert set(VALUE_FIELDS.values()) <= set(TensorProto.DESCRIPTOR.fields_by_name)


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_tensor_content_for_every_dtype(name: str) -> None:
    number, dtype = DTYPES[name]
    want = sample(dtype)
    got = tensor_to_array(
        "x", proto(number, [2, 3], tensor_content=want.astype(dtype.newbyteorder("<")).tobytes())
    )
    assert got.shape == (2, 3) and got.dtype.newbyteorder("=") == dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_typed_values_for_every_dtype(name: str) -> None:
    number, dtype = DTYPES[name]
    want = sample(dtype)
    if name == "DT_HALF":  # half_val carries the float16 bit patterns as int32
        values: list[Any] = want.reshape(-1).view(np.uint16).tolist()
    else:
        values = want.reshape(-1).tolist()
    got = tensor_to_array("x", proto(number, [2, 3], **{VALUE_FIELDS[name]: values}))
    assert got.shape == (2, 3) and got.dtype == dtype
    np.testing.assert_array_equal(got, want)


def test_half_val_bit_patterns() -> None:
    got = tensor_to_array("x", proto(19, [3], half_val=[0x3C00, 0xC000, 0x7BFF]))
    np.testing.assert_array_equal(got, np.array([1.0, -2.0, 65504.0], np.float16))


@pytest.mark.parametrize("name", sorted(set(DTYPES) - {"DT_HALF"}))
def test_one_value_fills_the_shape(name: str) -> None:
    number, dtype = DTYPES[name]
    value = True if dtype.kind == "b" else 3
    got = tensor_to_array("x", proto(number, [2, 3], **{VALUE_FIELDS[name]: [value]}))
    assert got.shape == (2, 3) and got.dtype == dtype
    assert (got == value).all()


def test_scalar_and_empty_shapes() -> None:
    scalar = tensor_to_array("x", proto(1, [], float_val=[2.5]))
    assert scalar.shape == () and scalar == 2.5
    empty = tensor_to_array("x", proto(1, [0, 4]))
    assert empty.shape == (0, 4) and empty.dtype == np.float32


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        (proto(1, [2, 2], float_val=[1, 2, 3]), r"input 'x': shape \[2, 2\] needs 4 values, got 3"),
        (proto(1, [2], float_val=[1, 2, 3]), r"shape \[2\] needs 2 values, got 3"),
        (proto(1, [3]), r"shape \[3\] needs 3 values, got 0"),
        (proto(9, [0], int64_val=[1]), r"shape \[0\] needs 0 values, got 1"),
        (proto(19, [2], half_val=[1, 2, 3]), r"shape \[2\] needs 2 values, got 3"),
        (
            proto(1, [3], tensor_content=b"\x00" * 11),
            r"input 'x': 11 bytes do not fit shape \[3\] of float32",
        ),
        (proto(2, [1], tensor_content=b"\x00" * 4), r"4 bytes do not fit shape \[1\] of float64 \(8 bytes"),
        (proto(5, [2], tensor_content=b"\x00" * 3), r"3 bytes do not fit shape \[2\] of int16"),
        (proto(1, [2, -1], float_val=[1.0]), r"tensor_shape \[2, -1\] has a negative dimension"),
        (proto(1, [-1], tensor_content=b"\x00" * 4), "negative dimension"),
        (proto(7, [1], string_val=[b"a"]), "TensorProto dtype 7 is not a numeric type"),  # DT_STRING
        (proto(0, [1]), "TensorProto dtype 0 is not a numeric type"),  # DT_INVALID
        (proto(8, [1], scomplex_val=[1.0, 2.0]), "dtype 8"),  # DT_COMPLEX64
        (proto(14, [1], half_val=[1]), "dtype 14"),  # DT_BFLOAT16
        (proto(999, [1]), "dtype 999"),
    ],
)
def test_malformed_tensors_are_invalid_input(message: Any, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        tensor_to_array("x", message)


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_array_to_tensor_round_trip(name: str) -> None:
    number, dtype = DTYPES[name]
    array = sample(dtype)
    message = TensorProto()
    array_to_tensor(array, message)
    assert message.dtype == number
    assert [d.size for d in message.tensor_shape.dim] == [2, 3]
    assert message.tensor_content == array.astype(dtype.newbyteorder("<")).tobytes()
    parsed = TensorProto.FromString(message.SerializeToString())
    np.testing.assert_array_equal(tensor_to_array("y", parsed), array)


def test_array_to_tensor_writes_big_endian_arrays_little_endian() -> None:
    big = np.array([1.0, 2.0], dtype=">f4")
    message = TensorProto()
    array_to_tensor(big, message)
    assert message.dtype == 1 and message.tensor_content == np.array([1.0, 2.0], "<f4").tobytes()


# ----- REST ----------------------------------------------------------------------------------------
def test_decode_b64_replaces_every_b64_object() -> None:
    enc = base64.b64encode
    value = {
        "a": [{"b64": enc(b"hi").decode()}, 3, {"b64": ""}],
        "b": {"c": {"b64": enc(b"\x00\xff").decode()}},
    }
    assert decode_b64(value) == {"a": [b"hi", 3, b""], "b": {"c": b"\x00\xff"}}


def test_decode_b64_leaves_look_alikes_alone() -> None:
    value = [{"b64": 5}, {"b64": "YQ==", "other": 1}, "YQ==", 1.5, None]
    assert decode_b64(value) == value


@pytest.mark.parametrize("text", ["abc", "Y", "YQ=", "Y Q==", "YQ==!", "***", "é", "YQ\u00e9="])
def test_decode_b64_rejects_invalid_base64(text: str) -> None:
    with pytest.raises(InvalidInput, match="invalid base64 value"):
        decode_b64([[{"b64": text}]])


def test_parse_predict_row_format_unnamed() -> None:
    inputs, row = parse_predict({"instances": [[1.0, 2.0], [3.0, 4.0]]})
    assert row is True and list(inputs) == [None]
    np.testing.assert_array_equal(inputs[None], [[1, 2], [3, 4]])


def test_parse_predict_row_format_named_instances_are_stacked() -> None:
    inputs, row = parse_predict(
        {"signature_name": "serving_default", "instances": [{"a": [1, 2], "b": 5}, {"a": [3, 4], "b": 6}]}
    )
    assert row is True and set(inputs) == {"a", "b"}
    np.testing.assert_array_equal(inputs["a"], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(inputs["b"], [5, 6])


def test_parse_predict_columnar_format() -> None:
    inputs, row = parse_predict({"signature_name": "", "inputs": {"a": [[1.5]], "b": [[1], [2]]}})
    assert row is False and set(inputs) == {"a", "b"}
    assert inputs["a"].shape == (1, 1) and inputs["b"].shape == (2, 1)
    unnamed, row = parse_predict({"inputs": [[1, 2, 3]]})
    assert row is False and unnamed[None].shape == (1, 3)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([1], "expected a JSON object, got list"),
        ({}, "exactly one of 'instances'"),
        ({"signature_name": "serving_default"}, "exactly one of 'instances'"),
        ({"instances": [[1]], "inputs": [[1]]}, "exactly one of 'instances'"),
        ({"signature_name": "predict", "instances": [[1]]}, "signature 'predict' not found"),
        ({"signature_name": 3, "instances": [[1]]}, "signature 3 not found"),
        ({"instances": []}, "'instances' must be a non-empty list"),
        ({"instances": {"a": [1]}}, "'instances' must be a non-empty list"),
        ({"instances": [{"a": 1}, {"b": 2}]}, r"every instance must name the same inputs \['a'\]"),
        ({"instances": [{"a": 1, "b": 2}, {"a": 1}]}, r"same inputs \['a', 'b'\]"),
        ({"instances": [{"a": 1}, [2]]}, "every instance must name the same inputs"),
        ({"instances": [{"a": [1, 2]}, {"a": [1]}]}, "input 'a': rows have different lengths"),
        ({"instances": [["x"]]}, "input 'instances': expected numbers, got strings"),
        ({"inputs": {"a": [[True]]}}, "input 'a': expected numbers, got booleans"),
        ({"inputs": None}, "input 'inputs': expected numbers"),
    ],
)
def test_parse_predict_rejects_malformed_bodies(payload: Any, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        parse_predict(payload)


def test_format_outputs_one_output() -> None:
    y = np.array([[0.125, 0.875], [0.5, 0.25]], np.float32)
    assert format_outputs({"y": y}, row=True) == {"predictions": y}
    assert format_outputs({"y": y}, row=False) == {"outputs": y}
    assert loads(dumps(format_outputs({"y": y}, row=True))) == {"predictions": y.tolist()}


def test_format_outputs_several_outputs() -> None:
    outputs = {"probs": np.array([[0.25, 0.75], [1.0, 0.0]], np.float32), "label": np.array([1, 0], np.int64)}
    row = loads(dumps(format_outputs(outputs, row=True)))
    assert row == {"predictions": [{"probs": [0.25, 0.75], "label": 1}, {"probs": [1.0, 0.0], "label": 0}]}
    columnar = loads(dumps(format_outputs(outputs, row=False)))
    assert columnar == {"outputs": {"probs": [[0.25, 0.75], [1.0, 0.0]], "label": [1, 0]}}
