"""Compressed request bodies (:mod:`service.protocols.encoding`): each coding undone, the body limit held
on the decoded size, and a clear error for whatever is not what its header says."""

from __future__ import annotations

import gzip
import zlib

import pytest

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.protocols.encoding import decode_body

BODY = b'{"model": "m", "inputs": [[1, 2, 3, 4]]}' * 50
LIMIT = 1 << 20


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("GZip", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),  # the zlib format, as RFC 9110 and tritonclient mean it
        ("deflate", raw_deflate(BODY)),  # what some clients send instead
        ("identity", BODY),
        ("gzip, identity", gzip.compress(BODY)),
        ("deflate, gzip", gzip.compress(zlib.compress(BODY))),  # applied in order: undone last first
    ],
)
def test_each_coding_is_undone(coding: str, encoded: bytes) -> None:
    assert decode_body(encoded, coding, LIMIT) == BODY
    assert decode_body(bytearray(encoded), coding, LIMIT) == BODY  # large bodies arrive as bytearrays


def test_gzip_members_one_after_another_are_one_body() -> None:
    assert decode_body(gzip.compress(BODY[:100]) + gzip.compress(BODY[100:]), "gzip", LIMIT) == BODY


def test_an_unknown_coding_is_a_415_naming_the_known_ones() -> None:
    with pytest.raises(UnsupportedMediaType, match=r"'br' is not supported.*gzip.*deflate.*identity") as info:
        decode_body(BODY, "gzip, br", LIMIT)
    assert info.value.http_status == 415 and info.value.details["supported"] == [
        "gzip",
        "deflate",
        "identity",
    ]


@pytest.mark.parametrize(
    ("coding", "encoded", "fragment"),
    [
        ("gzip", BODY, "not valid gzip data"),
        ("deflate", b"\xff" * 40, "not valid deflate data"),
        ("gzip", gzip.compress(BODY)[:-30], "ends before its compressed stream does"),
        ("deflate", zlib.compress(BODY) + b"tail", "4 bytes follow the end of the deflate stream"),
        ("gzip", gzip.compress(BODY) + b"tail", "not valid gzip data"),  # a second member that is not one
    ],
)
def test_data_that_is_not_what_its_header_says_is_a_400(coding: str, encoded: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        decode_body(encoded, coding, LIMIT)


def test_the_limit_holds_on_the_decoded_size_without_inflating_past_it() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in ~65 KB
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge, match=f"more than the limit of {LIMIT} bytes"):
        decode_body(bomb, "gzip", LIMIT)
    exact = b"x" * LIMIT
    assert decode_body(gzip.compress(exact), "gzip", LIMIT) == exact  # at the limit: still a body
    with pytest.raises(PayloadTooLarge):
        decode_body(gzip.compress(exact + b"x"), "gzip", LIMIT)
    with pytest.raises(PayloadTooLarge):  # the members together are over it
        decode_body(gzip.compress(exact) + gzip.compress(b"x"), "gzip", LIMIT)
