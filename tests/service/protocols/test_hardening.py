"""Malformed input never reaches the catch-all: every decoder answers ``InvalidInput`` (400) or
``PayloadTooLarge`` (413), and the limits are checked on the declared shape before anything is allocated.
One test per finding of the decoder review, plus the dtype and NaN rules of the data plane."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from service.conversion import convert
from service.errors import InvalidInput, PayloadTooLarge
from service.limits import DEFAULT_LIMITS, Limits
from service.protocols import native
from service.protocols.json import json_to_array
from service.protocols.tfserving import codec as tf
from service.protocols.tfserving.protos import tfserving_protos
from service.protocols.v2 import codec as v2
from service.settings import Settings

TensorProto = tfserving_protos().tensor_pb2.TensorProto
SMALL = Limits(max_rows=10, max_elements=100, max_json_depth=4, max_inputs=2, max_name_length=8)
NO_BINARY = memoryview(b"")


def tf_proto(dtype: int, shape: list[int], **fields: Any) -> Any:
    message = TensorProto(dtype=dtype)
    for d in shape:
        message.tensor_shape.dim.add().size = d
    for field, value in fields.items():
        getattr(message, field).extend(value)
    return message


def v2_input(**kw: Any) -> dict[str, Any]:
    return {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0], **kw}


def test_default_limits_are_the_settings_defaults() -> None:
    assert Limits.from_settings(Settings()) == DEFAULT_LIMITS


# ----- TF Serving TensorProto -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dtype", "field", "values"),
    [(4, "int_val", [300]), (4, "int_val", [-1]), (6, "int_val", [128]), (17, "int_val", [70000]),
     (19, "half_val", [70000]), (19, "half_val", [-1])],
)  # fmt: skip
def test_tf_out_of_range_typed_values_are_400(dtype: int, field: str, values: list[int]) -> None:
    with pytest.raises(InvalidInput, match="outside"):
        tf.tensor_to_array("x", tf_proto(dtype, [1], **{field: values}))


def test_tf_huge_fill_from_one_shape_is_413_before_allocation() -> None:
    with pytest.raises(PayloadTooLarge, match="elements"):
        tf.tensor_to_array("x", tf_proto(1, [2, 2**31, 2**31], float_val=[1.0]))
    with pytest.raises(PayloadTooLarge, match="rows"):
        tf.tensor_to_array("x", tf_proto(1, [2**62, 1], float_val=[1.0]))


def test_tf_fill_from_one_within_the_limits_still_works() -> None:
    np.testing.assert_array_equal(
        tf.tensor_to_array("x", tf_proto(1, [2, 3], float_val=[7.0])), np.full((2, 3), 7.0)
    )


def test_tf_decode_inputs_checks_count_total_and_rank() -> None:
    request = tfserving_protos().predict_pb2.PredictRequest()
    for name in ("a", "b", "c"):
        request.inputs[name].CopyFrom(tf_proto(1, [1], float_val=[1.0]))
    with pytest.raises(PayloadTooLarge, match="3 inputs"):
        tf.decode_inputs(request.inputs, SMALL)
    request = tfserving_protos().predict_pb2.PredictRequest()
    request.inputs["a"].CopyFrom(tf_proto(1, [10, 10], float_val=[1.0]))
    request.inputs["b"].CopyFrom(tf_proto(1, [10, 10], float_val=[1.0]))
    with pytest.raises(PayloadTooLarge, match="together"):
        tf.decode_inputs(request.inputs, SMALL)
    with pytest.raises(InvalidInput, match="dimensions"):
        tf.tensor_to_array("x", tf_proto(1, [1] * 70, float_val=[1.0]))


def test_tf_rest_limits_and_deep_b64() -> None:
    with pytest.raises(PayloadTooLarge, match="rows"):
        tf.parse_predict({"instances": [[1.0]] * 11}, SMALL)
    with pytest.raises(InvalidInput, match=r"nested deeper|dimensions"):
        tf.parse_predict({"inputs": [[[[[[1.0]]]]]]}, SMALL)
    with pytest.raises(PayloadTooLarge, match="3 inputs"):
        tf.parse_predict({"inputs": {"a": [1], "b": [1], "c": [1]}}, SMALL)
    deep: Any = {"b64": "AA=="}
    for _ in range(2000):
        deep = [deep]
    with pytest.raises(InvalidInput, match="nested too deeply"):
        tf.decode_b64({"instances": deep})


# ----- KServe V2 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [[True, [False]], [[True], [True, False]], [[[True]], True]])
def test_v2_ragged_bool_is_400(data: list[Any]) -> None:
    with pytest.raises(InvalidInput):
        v2.decode_inputs({"inputs": [v2_input(datatype="BOOL", data=data)]}, NO_BINARY)


@pytest.mark.parametrize("bad", [[1], "x", 3, True])
def test_v2_parameters_must_be_objects(bad: Any) -> None:
    for payload in (
        {"inputs": [v2_input(parameters=bad)]},
        {"inputs": [v2_input()], "parameters": bad},
    ):
        with pytest.raises(InvalidInput, match="'parameters' must be an object"):
            v2.decode_inputs(payload, NO_BINARY)
    with pytest.raises(InvalidInput, match="'parameters' must be an object"):
        v2.requested_outputs({"outputs": [{"name": "y", "parameters": bad}]})
    with pytest.raises(InvalidInput, match="'parameters' must be an object"):
        v2.requested_outputs({"parameters": bad})


@pytest.mark.parametrize(("datatype", "data"), [("INT8", [300]), ("INT8", [-129]), ("UINT8", [-1]),
                                               ("UINT16", [65536]), ("INT32", [2**31]), ("UINT64", [-1])])  # fmt: skip
def test_v2_json_out_of_range_integers_are_400(datatype: str, data: list[int]) -> None:
    with pytest.raises(InvalidInput, match=r"outside|fit no integer"):
        v2.decode_inputs({"inputs": [v2_input(shape=[1], datatype=datatype, data=data)]}, NO_BINARY)


def test_v2_grpc_out_of_range_contents_are_400() -> None:
    request = service_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="UINT8", shape=[1]).contents.uint_contents.append(300)
    with pytest.raises(InvalidInput, match="outside UINT8's range"):
        v2.decode_grpc_inputs(request)


def test_v2_uint64_above_int64_mixed_with_small_values_is_exact() -> None:
    top = 2**64 - 1
    arrays = v2.decode_inputs({"inputs": [v2_input(datatype="UINT64", data=[1, top])]}, NO_BINARY)
    assert arrays["x"].dtype == np.uint64 and arrays["x"].tolist() == [1, top]
    request = service_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="UINT64", shape=[2]).contents.uint64_contents.extend([1, top])
    assert v2.decode_grpc_inputs(request)["x"].tolist() == [1, top]


@pytest.mark.parametrize("length", [" 7 ", "+7", "1_0", "٧", "7\n", "0x7"])
def test_v2_header_length_takes_ascii_digits_only(length: str) -> None:
    with pytest.raises(InvalidInput, match="ASCII digits"):
        v2.split_body(b'{"a": 1}xxxxxx', length)


def test_v2_grpc_contents_and_raw_for_one_input_is_400() -> None:
    request = service_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
    request.raw_input_contents.append(np.float32(1.0).tobytes())
    with pytest.raises(InvalidInput, match="both contents and raw_input_contents"):
        v2.decode_grpc_inputs(request)


def test_v2_declared_shapes_are_checked_before_allocation() -> None:
    huge = {"inputs": [v2_input(shape=[2, 2**40], parameters={"binary_data_size": 0})]}
    with pytest.raises(PayloadTooLarge, match="elements"):
        v2.decode_inputs(huge, NO_BINARY)
    zeros = {"inputs": [v2_input(shape=[0] * 100, parameters={"binary_data_size": 0})]}
    with pytest.raises(InvalidInput, match="dimensions"):
        v2.decode_inputs(zeros, NO_BINARY)
    request = service_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 2**40])
    request.raw_input_contents.append(b"")
    with pytest.raises(PayloadTooLarge, match="elements"):
        v2.decode_grpc_inputs(request)
    three = {"inputs": [v2_input(name=n) for n in "abc"]}
    with pytest.raises(PayloadTooLarge, match="3 inputs"):
        v2.decode_inputs(three, NO_BINARY, SMALL)
    with pytest.raises(InvalidInput, match="given twice"):
        v2.decode_inputs({"inputs": [v2_input(), v2_input()]}, NO_BINARY)


# ----- native JSON ------------------------------------------------------------------------------------
def test_native_limits() -> None:
    with pytest.raises(PayloadTooLarge, match="rows"):
        native.parse_predict({"model": "m", "inputs": [[1.0]] * 11}, SMALL)
    with pytest.raises(PayloadTooLarge, match="elements"):
        native.parse_predict({"model": "m", "inputs": [[1.0] * 101]}, SMALL)
    with pytest.raises(InvalidInput, match=r"nested deeper|dimensions"):
        native.parse_predict({"model": "m", "inputs": [[[[[1.0]]]]]}, SMALL)
    with pytest.raises(PayloadTooLarge, match="3 inputs"):
        native.parse_predict({"model": "m", "inputs": {"a": [1], "b": [1], "c": [1]}}, SMALL)


def test_deep_ragged_json_is_400_not_a_numpy_error() -> None:
    deep: Any = [0]
    for _ in range(100):
        deep = [deep]
    for value in (deep, [1, deep], [[1], deep]):
        with pytest.raises(InvalidInput, match=r"nested deeper|dimensions"):
            json_to_array(value, "x")


# ----- the dtype rule and the NaN rule (data plane, every protocol) ------------------------------------
F32 = np.dtype(np.float32)


@pytest.mark.parametrize("source", [np.int8, np.int16, np.uint8, np.uint16, np.float32])
def test_typed_dtypes_that_convert_exactly_are_taken(source: Any) -> None:
    out = convert("x", np.array([[1, 2]], source), F32, typed=True)
    assert out.dtype == F32 and out.tolist() == [[1.0, 2.0]]


@pytest.mark.parametrize(
    "source", [np.float16, np.float64, np.int32, np.int64, np.uint32, np.uint64, np.bool_]
)
def test_typed_dtypes_that_may_change_values_are_refused(source: Any) -> None:
    with pytest.raises(InvalidInput, match="expected float32"):
        convert("x", np.array([[1, 0]], source), F32, typed=True)


def test_untyped_json_numbers_convert_when_exact() -> None:
    assert convert("x", np.array([0, 255, 2**24]), F32, typed=False).tolist() == [0.0, 255.0, 2.0**24]
    with pytest.raises(InvalidInput, match="exactly"):
        convert("x", np.array([2**24 + 1]), F32, typed=False)
    assert convert("x", np.array([3.0, -2.0]), np.dtype(np.int32), typed=False).tolist() == [3, -2]
    with pytest.raises(InvalidInput, match="exactly"):
        convert("x", np.array([1.5]), np.dtype(np.int32), typed=False)
    with pytest.raises(InvalidInput, match="exactly"):
        convert("x", np.array([300]), np.dtype(np.int8), typed=False)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("typed", [True, False])
def test_nan_and_infinities_are_refused(value: float, typed: bool) -> None:
    with pytest.raises(InvalidInput, match="NaN and infinite"):
        convert("x", np.array([1.0, value], np.float32), F32, typed=typed)


def test_a_json_number_that_overflows_float32_is_refused() -> None:
    with pytest.raises(InvalidInput, match="NaN and infinite"):
        convert("x", np.array([1e39]), F32, typed=False)


# ----- found by the fuzzers (property tests and schemathesis) -----------------------------------------
@pytest.mark.parametrize("datatype", [["FP32"], {"a": 1}, 3, None])
def test_v2_datatype_that_is_not_a_string_is_400(datatype: Any) -> None:
    with pytest.raises(InvalidInput, match="is not supported"):
        v2.decode_inputs({"inputs": [v2_input(datatype=datatype)]}, NO_BINARY)


@pytest.mark.parametrize("datatype", ["UINT8", "INT64", "UINT64"])
def test_v2_integer_datatype_with_empty_data_is_decoded_or_400(datatype: str) -> None:
    arrays = v2.decode_inputs({"inputs": [v2_input(shape=[0], datatype=datatype, data=[])]}, NO_BINARY)
    assert arrays["x"].shape == (0,)
    with pytest.raises(InvalidInput, match="needs 1 values, got 0"):
        v2.decode_inputs({"inputs": [v2_input(shape=[1], datatype=datatype, data=[])]}, NO_BINARY)


@pytest.mark.parametrize("shape", [[0, 2**62, 2**62], [1, 2**31, 0], [0, 10**9]])
def test_a_zero_dimension_does_not_excuse_huge_other_dimensions(shape: list[int]) -> None:
    with pytest.raises(PayloadTooLarge, match="elements"):
        tf.tensor_to_array("x", tf_proto(1, shape))
    with pytest.raises(PayloadTooLarge, match="elements"):
        v2.decode_inputs({"inputs": [v2_input(shape=shape, parameters={"binary_data_size": 0})]}, NO_BINARY)
