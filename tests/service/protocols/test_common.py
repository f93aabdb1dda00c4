"""Version parsing and little-endian tensor bytes, shared by every protocol adapter."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import InvalidInput
from service.protocols.common import from_le_bytes, le_bytes, parse_version


@pytest.mark.parametrize("raw", [None, ""])
def test_parse_version_absent_means_default(raw: str | None) -> None:
    assert parse_version(raw) is None


@pytest.mark.parametrize(("raw", "want"), [("1", 1), ("42", 42), ("007", 7), ("123456789012", 123456789012)])
def test_parse_version_positive_ascii_integers(raw: str, want: int) -> None:
    got = parse_version(raw)
    assert got == want and type(got) is int


@pytest.mark.parametrize(
    "raw",
    [
        "0",
        "00",
        "-1",
        "+1",
        "1.5",
        "1e3",
        "abc",
        " 1",
        "1 ",
        "1_0",
        "\u0661\u0662",  # Arabic-Indic digits: isdigit() is true and int() would take them
        "\u00b2",  # superscript two: isdigit() is true but int() raises ValueError
        "\uff11",  # fullwidth digit one
    ],
)
def test_parse_version_rejects_everything_else_as_invalid_input(raw: str) -> None:
    with pytest.raises(InvalidInput, match="version must be a positive integer") as info:
        parse_version(raw)
    assert repr(raw) in info.value.message


@pytest.mark.parametrize(
    "dtype",
    [
        "float16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "bool",
    ],
)
def test_le_bytes_round_trip(dtype: str) -> None:
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 4)) * 50).astype(dtype)
    raw = le_bytes(array)
    assert len(raw) == array.size * array.dtype.itemsize
    back = from_le_bytes("x", raw, array.dtype, [3, 4])
    assert back.shape == (3, 4) and back.dtype.newbyteorder("=") == array.dtype
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("dtype", [">f4", ">i4", ">u2", ">f8", ">i8"])
def test_le_bytes_writes_little_endian_for_big_endian_arrays(dtype: str) -> None:
    big = np.array([[1, 2], [3, 258]], dtype=dtype)
    little = big.astype(np.dtype(dtype).newbyteorder("<"))
    raw = le_bytes(big)
    assert raw == little.tobytes() and raw != big.tobytes()
    np.testing.assert_array_equal(from_le_bytes("x", raw, big.dtype, [2, 2]), big)
    # a big-endian dtype given to from_le_bytes still reads the bytes as little-endian
    assert from_le_bytes("x", raw, np.dtype(dtype), [2, 2]).dtype.byteorder in "<="


def test_le_bytes_of_a_non_contiguous_array_is_row_major() -> None:
    array = np.arange(12, dtype=np.int32).reshape(3, 4).T  # Fortran-ordered view
    assert le_bytes(array) == np.ascontiguousarray(array).astype("<i4").tobytes()


def test_le_bytes_known_bytes() -> None:
    assert le_bytes(np.array([1], dtype=">u4")) == b"\x01\x00\x00\x00"
    assert le_bytes(np.array([1.0], dtype=np.float32)) == b"\x00\x00\x80\x3f"


def test_from_le_bytes_accepts_memoryview_and_empty_shapes() -> None:
    raw = memoryview(b"\x00" * 8 + le_bytes(np.array([7, 9], np.int32)))[8:]
    np.testing.assert_array_equal(from_le_bytes("x", raw, np.dtype(np.int32), [2]), [7, 9])
    assert from_le_bytes("x", b"", np.dtype(np.float32), [0, 4]).shape == (0, 4)
    assert from_le_bytes("x", b"\x01\x00", np.dtype(np.int16), []).shape == ()


@pytest.mark.parametrize(
    ("raw", "dtype", "shape", "fragment"),
    [
        (
            b"\x00" * 12,
            "float32",
            [2, 2],
            r"12 bytes do not fit shape \[2, 2\] of float32 \(16 bytes expected\)",
        ),
        (b"\x00" * 20, "float32", [2, 2], r"20 bytes do not fit shape \[2, 2\]"),
        (b"\x00" * 7, "float64", [1], r"7 bytes do not fit shape \[1\] of float64 \(8 bytes expected\)"),
        (b"\x00" * 5, "int16", [2], r"5 bytes .*int16"),  # not a multiple of the item size
        (b"\x00" * 3, "int32", [-1], "3 bytes"),
        (b"", "uint8", [1], r"0 bytes do not fit shape \[1\] of uint8 \(1 bytes expected\)"),
    ],
)
def test_from_le_bytes_rejects_byte_counts_that_do_not_fit(
    raw: bytes, dtype: str, shape: list[int], fragment: str
) -> None:
    with pytest.raises(InvalidInput, match=fragment) as info:
        from_le_bytes("pixels", raw, np.dtype(dtype), shape)
    assert "input 'pixels'" in info.value.message
