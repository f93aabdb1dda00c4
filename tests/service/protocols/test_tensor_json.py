"""The simdjson fast path answers what orjson + json_to_array answer, or steps aside (``None``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import ServingError
from service.protocols import native
from service.protocols.json import json_to_array
from service.protocols.tensor_json import MAX_BODY, Path, loads_tensors


def _inputs(path: Path) -> bool:
    return path == ("inputs",)


def ordinary(body: bytes) -> tuple[Any, Any]:
    """What the ordinary path makes of ``body``: the envelope and the array (or the error's text)."""
    payload = orjson.loads(body)
    try:
        array: Any = json_to_array(payload["inputs"], "inputs")
    except ServingError as exc:
        array = str(exc)
    return payload, array


def same(fast: Any, body: bytes) -> None:
    payload, array = ordinary(body)
    assert isinstance(array, np.ndarray), f"fast path took a body the ordinary path refuses: {array}"
    got = fast["inputs"]
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)
    assert {k: v for k, v in fast.items() if k != "inputs"} == {
        k: v for k, v in payload.items() if k != "inputs"
    }


def test_an_image_is_read_into_an_array() -> None:
    image = np.random.default_rng(0).integers(0, 256, (1, 28, 28, 1)).astype(np.float64)
    body = orjson.dumps({"model": "cnn", "inputs": image.tolist()})
    fast = loads_tensors(body, _inputs, 32)
    assert fast is not None
    same(fast, body)
    assert fast["inputs"].dtype == np.float64


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"m","inputs":[[1,2],[3,4,5],[6]]}',  # ragged rows with a regular element count
        b'{"model":"m","inputs":[[[1]],[2]]}',
        b'{"model":"m","inputs":[1,[2]]}',
        b'{"model":"m","inputs":[[1],2]}',
        b'{"model":"m","inputs":[[true,2]]}',
        b'{"model":"m","inputs":[[null]]}',
        b'{"model":"m","inputs":[["1",2]]}',
        b'{"model":"m","inputs":[[{"a":1}]]}',
        b'{"inputs":[[1]],"inputs":[[2]]}',  # duplicate keys: orjson keeps the last
        b'{"model":"\\u00e9","inputs":[1]}',  # an escape
        b'{"model":"m","inputs":[12345678901234567, 1.5]}',  # would round in float64
        b'{"model":"m","inputs":[9223372036854775808]}',  # outside int64
        b'{"model":"m","inputs":[1e400]}',
        b'{"model":"m","inputs":[]}',
        b'{"model":"m","inputs":[[]]}',
        b'{"model":"m","inputs":[[1,2]],}',  # malformed
        b'{"model":"m","inputs":[[1,2]]',
        b"",
    ],
)
def test_anything_doubtful_takes_the_ordinary_path(body: bytes) -> None:
    assert loads_tensors(body, _inputs, 32) is None


def test_too_deep_and_too_large_take_the_ordinary_path() -> None:
    assert loads_tensors(b'{"inputs":[[[1]]]}', _inputs, 2) is None
    assert loads_tensors(b'{"inputs":[[[1]]]}', _inputs, 3) is not None
    body = b'{"inputs":[' + b"1," * (MAX_BODY // 2) + b"1]}"
    assert loads_tensors(body, _inputs, 32) is None


def test_white_space_other_fields_and_named_inputs() -> None:
    body = b' {"model" : "m e", "version": 2, "outputs": ["a b"],\n "p": {"t": true, "n": null},'
    body += b' "inputs" : {"x": [ [ 1 , 2 ] ], "y": [-0.0, 1E5]} } '
    fast = loads_tensors(body, native._is_tensor, 32)
    assert fast is not None
    assert fast["model"] == "m e" and fast["version"] == 2 and fast["p"] == {"t": True, "n": None}
    assert fast["inputs"]["x"].dtype == np.int64 and fast["inputs"]["x"].tolist() == [[1, 2]]
    assert fast["inputs"]["y"].dtype == np.float64 and fast["inputs"]["y"].tolist() == [-0.0, 1e5]


def test_arrays_outlive_the_next_parse() -> None:
    first = loads_tensors(b'{"inputs":[1.5,2.5]}', _inputs, 32)
    for _ in range(3):
        loads_tensors(b'{"inputs":[9.5,9.5,9.5,9.5]}', _inputs, 32)
    assert first is not None and first["inputs"].tolist() == [1.5, 2.5]


numbers = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
leaves = st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=3))
nested = st.recursive(st.lists(leaves, max_size=4), lambda inner: st.lists(inner, max_size=4), max_leaves=20)


@st.composite
def regular(draw: st.DrawFn) -> list[Any]:
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    ints = draw(st.booleans())
    count = int(np.prod(shape))
    flat = draw(st.lists(st.integers(-(2**40), 2**40) if ints else numbers, min_size=count, max_size=count))
    return np.array(flat, dtype=object).reshape(shape).tolist()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=st.one_of(regular(), nested), model=st.text(max_size=5), pretty=st.booleans())
def test_same_answer_as_the_ordinary_path(inputs: list[Any], model: str, pretty: bool) -> None:
    body = orjson.dumps({"model": model, "inputs": inputs}, option=orjson.OPT_INDENT_2 if pretty else 0)
    fast = loads_tensors(body, _inputs, 32)
    if fast is not None:
        same(fast, body)


@settings(max_examples=100, deadline=None)
@given(inputs=regular(), model=st.text(alphabet="abc -_", min_size=1, max_size=5))
def test_regular_numbers_take_the_fast_path(inputs: list[Any], model: str) -> None:
    body = orjson.dumps({"model": model, "inputs": inputs})
    fast = loads_tensors(body, _inputs, 32)
    if any(abs(v) >= 2**53 for v in np.ravel(np.array(inputs, dtype=object))):
        return  # large floats step aside on purpose
    assert fast is not None
    same(fast, body)
