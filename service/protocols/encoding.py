"""Request bodies sent compressed (``Content-Encoding: gzip`` or ``deflate``), decoded within the body limit.

tritonclient's ``request_compression_algorithm="gzip"`` / ``"deflate"`` compresses the whole V2 request
(JSON header and binary tensors; ``Inference-Header-Content-Length`` counts the uncompressed header), as
Triton accepts; curl's and requests' users can do the same on every route. The decoded body must fit
``SERVING_MAX_BODY_BYTES`` like any other: decoding stops one byte past the limit, so a small body that
would inflate to gigabytes costs at most the limit in memory before its 413. ``deflate`` is the zlib
format (RFC 9110), raw DEFLATE streams are accepted too, as browsers do; ``identity`` is no encoding. Any
other coding (``br``, ``zstd``, ...) is a 415 naming the ones understood. Responses are not compressed
(``Accept-Encoding`` asks, it does not oblige: every client here reads an identity answer).
"""

from __future__ import annotations

import zlib

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

CODINGS = ("gzip", "deflate", "identity")
"""The content codings a request body may arrive in (``x-gzip`` is ``gzip``)."""
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decode_body(body: bytes | bytearray, content_encoding: str, limit: int) -> bytes | bytearray:
    """``body`` with the codings of its ``Content-Encoding`` header undone (listed in the order they were
    applied, so undone last first); 415 for an unknown coding, 400 for data that is not what its coding
    says, 413 when the decoded body is over ``limit`` bytes."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    for coding in codings:
        if coding not in (*CODINGS, "x-gzip"):
            raise UnsupportedMediaType(
                f"Content-Encoding {coding!r} is not supported; send the body as one of {list(CODINGS)}",
                supported=list(CODINGS),
            )
    for coding in reversed(codings):
        if coding != "identity":
            body = _inflate(body, "gzip" if coding == "x-gzip" else coding, limit)
    return body


def _inflate(data: bytes | bytearray, coding: str, limit: int) -> bytes:
    try:
        return _members(data, _WBITS[coding], coding, limit)
    except zlib.error as exc:
        if coding == "deflate":  # a raw DEFLATE stream without the zlib wrapper
            try:
                return _members(data, -zlib.MAX_WBITS, coding, limit)
            except zlib.error:
                pass
        raise InvalidInput(
            f"the body is not valid {coding} data (Content-Encoding: {coding}): {exc}"
        ) from None


def _members(data: bytes | bytearray, wbits: int, coding: str, limit: int) -> bytes:
    """Every member of ``data`` (gzip allows several, one after another), decoded into at most ``limit``
    bytes."""
    out: list[bytes] = []
    size = 0
    rest = memoryview(data)
    while True:
        inflater = zlib.decompressobj(wbits)
        chunk = inflater.decompress(rest, limit - size + 1)
        size += len(chunk)
        if size > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(
                f"the request body decodes ({coding}) to more than the limit of {limit} bytes", limit=limit
            )
        out.append(chunk)
        if not inflater.eof:
            raise InvalidInput(f"the {coding} body ends before its compressed stream does (truncated?)")
        rest = memoryview(inflater.unused_data)
        if not rest:
            return b"".join(out)
        if coding != "gzip":  # only gzip has members: a second one starts here
            raise InvalidInput(f"{len(rest)} bytes follow the end of the {coding} stream")
