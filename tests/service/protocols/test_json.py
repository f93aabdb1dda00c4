"""The JSON codec turns wire data into arrays or a clear 400."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import InvalidInput
from service.protocols.json import dumps, json_to_array, loads


@pytest.mark.parametrize(
    ("body", "fragment"),
    [(b"", "empty request body"), (b"{not json", "malformed JSON"), (b'{"a": 1', "malformed JSON")],
)
def test_loads_rejects_bad_json(body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        loads(body)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ([["a", "b"]], "strings"),
        ([[True, False]], "booleans"),
        ([[1.0, None]], "non-numeric"),
        ([[1.0, 2.0], [3.0]], "different lengths"),
        # the ones a flattening shortcut could get wrong: compensating ragged rows, one-item rows
        # holding a string, a list or an object, deeper rows further down
        ([[1, 2], [3, 4, 5], [6]], "different lengths"),
        ([[[1], [2]], [[3], [4, 5]]], "different lengths"),
        ([[[1]], [2]], "different lengths"),
        ([[1], ["5"]], "strings"),
        ([[{"a": 1}], [{"b": 2}]], "non-numeric"),
        ([[[True]], [[False]]], "booleans"),
        ([10**30], "non-numeric"),
        ([[1, 2], "ab"], "different lengths"),
    ],
)
def test_json_to_array_rejects_non_numeric(value: object, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        json_to_array(value, "x")


def test_json_to_array_matches_numpy_on_regular_nested_lists() -> None:
    rng = np.random.default_rng(3)
    for shape in [(5,), (3, 4), (2, 28, 28, 1), (1, 10, 1), (4, 1), (2, 3, 1, 2)]:
        for values in (rng.normal(size=shape), rng.integers(-9, 9, size=shape)):
            nested = values.tolist()
            got = json_to_array(nested, "x")
            want = np.asarray(nested)
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    mixed = json_to_array([[1], [2.5], [True]], "x")  # like np.asarray: one float makes all floats
    assert mixed.dtype == np.float64 and mixed.ravel().tolist() == [1.0, 2.5, 1.0]


def test_json_to_array_and_dumps_round_trip_numbers() -> None:
    array = json_to_array([[1, 2.5], [3, 4]], "x")
    assert array.shape == (2, 2) and array.dtype.kind == "f"
    assert loads(dumps({"y": array.astype(np.float32)})) == {"y": [[1.0, 2.5], [3.0, 4.0]]}
