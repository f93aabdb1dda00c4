"""Property tests of every decoder, in-process: whatever arrives, a decoder returns arrays or raises
``InvalidInput`` / ``PayloadTooLarge`` (400 / 413), nothing else; and what it returns goes through the
dtype rule (:func:`service.conversion.convert`) with the same two outcomes.

Derandomized (the same cases every run). ``FUZZ_EXAMPLES`` sets the examples per test (default 150;
the README's full run uses 1500): see README, Development, Fuzzing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

from service.conversion import convert
from service.errors import InvalidInput, PayloadTooLarge
from service.limits import Limits
from service.protocols import native
from service.protocols.tfserving import codec as tf
from service.protocols.tfserving.protos import tfserving_protos
from service.protocols.tfserving.spec import DTYPE_BY_NUMBER
from service.protocols.v2 import codec as v2
from service.protocols.v2.spec import DATATYPES

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
LIMITS = Limits(max_rows=64, max_elements=4096, max_json_depth=8, max_inputs=4, max_name_length=32)
EXPECTED = (InvalidInput, PayloadTooLarge)
pb = tfserving_protos()

numbers = st.one_of(
    st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0, 1, 255, 2**63, 2**64 - 1, -(2**63), 1e39, 1e-45]),
)  # fmt: skip
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=60,
)  # fmt: skip
regular = st.integers(1, 4).flatmap(
    lambda rank: st.lists(st.integers(0, 5), min_size=rank, max_size=rank).flatmap(
        lambda shape: st.builds(lambda flat: np.asarray(flat, dtype=float).reshape(shape).tolist(),
                                st.lists(numbers.filter(lambda v: abs(v) < 1e300), min_size=int(np.prod(shape)),
                                         max_size=int(np.prod(shape))))
    )
)  # fmt: skip
tensors_json = st.one_of(json_values, regular)
dims = st.one_of(st.integers(-3, 8), st.sampled_from([2**31, 2**40, 2**62]))
shapes = st.one_of(st.lists(dims, max_size=5), st.lists(st.just(0), min_size=60, max_size=80), json_values)
datatypes = st.one_of(st.sampled_from(sorted(DATATYPES)), st.sampled_from(["BYTES", "fp32", ""]), json_values)


def through_the_dtype_rule(arrays: dict[Any, np.ndarray], typed: bool) -> None:
    for name, array in arrays.items():
        assert isinstance(array, np.ndarray)
        for target in (np.float32, np.int32):
            with contextlib.suppress(InvalidInput):
                convert(str(name), array, np.dtype(target), typed)


CASES = [0]


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\ndecoder properties: {CASES[0]} cases, FUZZ_EXAMPLES={EXAMPLES}")


def decodes_or_refuses(decode: Any, *args: Any, typed: bool = False) -> None:
    CASES[0] += 1
    try:
        arrays = decode(*args)
    except EXPECTED:
        return
    through_the_dtype_rule(arrays, typed)


@FUZZ
@given(st.one_of(
    json_values,
    st.fixed_dictionaries({"model": st.one_of(st.text(max_size=40), json_values), "inputs": tensors_json},
                          optional={"version": json_values, "label": json_values, "outputs": json_values}),
    st.fixed_dictionaries({"model": st.just("m"), "inputs": st.dictionaries(st.text(max_size=40), tensors_json, max_size=6)}),
))  # fmt: skip
def test_native_json(payload: Any) -> None:
    decodes_or_refuses(lambda p: native.parse_predict(p, LIMITS).inputs, payload)


@FUZZ
@given(st.one_of(
    json_values,
    st.fixed_dictionaries({"instances": st.one_of(tensors_json, st.lists(st.dictionaries(st.sampled_from("ab"), tensors_json), max_size=4))},
                          optional={"signature_name": json_values}),
    st.fixed_dictionaries({"inputs": st.one_of(tensors_json, st.dictionaries(st.text(max_size=4), tensors_json, max_size=6))}),
    st.fixed_dictionaries({"instances": st.lists(st.one_of(st.fixed_dictionaries({"b64": st.text(max_size=8)}), tensors_json), max_size=3)}),
))  # fmt: skip
def test_tfserving_row_and_columnar(payload: Any) -> None:
    decodes_or_refuses(
        lambda p: tf.parse_predict(tf.decode_b64(p, LIMITS.max_json_depth + 2), LIMITS)[0], payload
    )


v2_tensor = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["x", "y"]), st.text(max_size=40), json_values), "shape": shapes,
     "datatype": datatypes},
    optional={"data": tensors_json, "parameters": st.one_of(json_values, st.fixed_dictionaries({"binary_data_size": st.one_of(st.integers(-2, 64), json_values)}))},
)  # fmt: skip
v2_payload = st.one_of(
    json_values,
    st.fixed_dictionaries({"inputs": st.one_of(st.lists(v2_tensor, max_size=6), json_values)},
                          optional={"outputs": json_values, "parameters": json_values, "id": json_values}),
)  # fmt: skip


@FUZZ
@given(v2_payload)
def test_v2_json(payload: Any) -> None:
    def decode(p: Any) -> Any:
        body = orjson.dumps(p)
        header, binary = v2.split_body(body, None)
        v2.requested_outputs(header)
        return v2.decode_inputs(header, binary, LIMITS)

    decodes_or_refuses(decode, payload, typed=True)


@FUZZ
@given(v2_payload, st.binary(max_size=256), st.one_of(st.none(), st.text(max_size=6), st.just("HEADER")))
def test_v2_binary_header_and_body(payload: Any, blob: bytes, length: str | None) -> None:
    header = orjson.dumps(payload)
    body = header + blob
    declared = str(len(header)) if length in (None, "HEADER") else length

    def decode(_: Any) -> Any:
        parsed, binary = v2.split_body(body, declared)
        v2.requested_outputs(parsed)
        return v2.decode_inputs(parsed, binary, LIMITS)

    decodes_or_refuses(decode, None, typed=True)


FIELD_VALUES = {
    "float_val": st.floats(width=32, allow_nan=True), "double_val": st.floats(allow_nan=True),
    "int_val": st.integers(-(2**31), 2**31 - 1), "int64_val": st.integers(-(2**63), 2**63 - 1),
    "bool_val": st.booleans(), "uint32_val": st.integers(0, 2**32 - 1), "uint64_val": st.integers(0, 2**64 - 1),
    "half_val": st.integers(-(2**31), 2**31 - 1),
}  # fmt: skip
tensor_protos = st.builds(
    lambda dtype, shape, field, values, content: (dtype, shape, field, values, content),
    st.one_of(st.sampled_from(sorted(DTYPE_BY_NUMBER)), st.integers(0, 30)),
    st.lists(st.one_of(st.integers(-3, 8), st.sampled_from([2**31, 2**40, 2**62])), max_size=6),
    st.sampled_from(sorted(FIELD_VALUES)),
    st.integers(0, 12),
    st.one_of(st.just(b""), st.binary(max_size=128)),
)


def build_tensor(proto: Any, spec: tuple[Any, ...], data: st.DataObject) -> None:
    dtype, shape, field, count, content = spec
    proto.dtype = dtype
    for d in shape:
        proto.tensor_shape.dim.add().size = d
    getattr(proto, field).extend(data.draw(st.lists(FIELD_VALUES[field], min_size=count, max_size=count)))
    proto.tensor_content = content


@FUZZ
@given(st.lists(st.tuples(st.text(max_size=40), tensor_protos), max_size=6), st.data())
def test_tfserving_predict_request(tensors: list[tuple[str, Any]], data: st.DataObject) -> None:
    request = pb.predict_pb2.PredictRequest()
    for name, spec in tensors:
        build_tensor(request.inputs[name], spec, data)
    decodes_or_refuses(tf.decode_inputs, request.inputs, LIMITS, typed=True)


CONTENTS = {
    "bool_contents": st.booleans(), "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": st.integers(-(2**63), 2**63 - 1), "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1), "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
}  # fmt: skip
v2_grpc_tensor = st.tuples(
    st.text(max_size=40), st.one_of(st.sampled_from(sorted(DATATYPES)), st.text(max_size=5)),
    st.lists(st.one_of(st.integers(-3, 8), st.sampled_from([2**31, 2**40, 2**62])), max_size=6),
    st.lists(st.sampled_from(sorted(CONTENTS)), max_size=2), st.integers(0, 10),
)  # fmt: skip


@FUZZ
@given(st.lists(v2_grpc_tensor, max_size=6), st.lists(st.binary(max_size=96), max_size=6), st.data())
def test_v2_model_infer_request(tensors: list[Any], raw: list[bytes], data: st.DataObject) -> None:
    request = service_pb2.ModelInferRequest(model_name="m")
    for name, dtype_name, shape, fields, count in tensors:
        tensor = request.inputs.add(name=name, datatype=dtype_name, shape=shape)
        for field in fields:
            getattr(tensor.contents, field).extend(
                data.draw(st.lists(CONTENTS[field], min_size=count, max_size=count))
            )
    request.raw_input_contents.extend(raw)
    decodes_or_refuses(v2.decode_grpc_inputs, request, LIMITS, typed=True)
