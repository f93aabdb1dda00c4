"""Content codings both ways: request bodies sent compressed, answers compressed for clients that ask.

**Requests** (``Content-Encoding: gzip`` or ``deflate``, :func:`decode_body`). tritonclient's
``request_compression_algorithm="gzip"`` / ``"deflate"`` compresses the whole V2 request (JSON header and
binary tensors; ``Inference-Header-Content-Length`` counts the uncompressed header), as Triton accepts;
curl's and requests' users can do the same on every route. The decoded body must fit
``SERVING_MAX_BODY_BYTES`` like any other: decoding stops one byte past the limit, so a small body that
would inflate to gigabytes costs at most the limit in memory before its 413. ``deflate`` is the zlib
format (RFC 9110), raw DEFLATE streams are accepted too, as browsers do; ``identity`` is no encoding. Any
other coding (``br``, ``zstd``, ...) is a 415 naming the ones understood.

**Answers** (``Accept-Encoding``, :func:`compress_answer`). An answer of at least
``SERVING_COMPRESS_MIN_BYTES`` goes out gzip- or deflate-compressed when the request's
``Accept-Encoding`` prefers one of them to ``identity`` (q-values; gzip on a tie), as Triton answers
tritonclient's ``response_compression_algorithm``. zlib's fastest level: JSON of floats halves at about
85 MB/s, where the default level gains 6 % more at a sixth of the speed. An answer that compression
would not shrink by an eighth (raw float tensors: ~10 %) is sent as it is, the CPU spent but not the
client's. Answers of 256 KiB and more are compressed on a worker thread, not on the event loop. Every
answer of that size says ``Vary: Accept-Encoding``.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable
from functools import lru_cache

from starlette.responses import Response

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

CODINGS = ("gzip", "deflate", "identity")
"""The content codings a request body may arrive in (``x-gzip`` is ``gzip``)."""
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
OFF_LOOP_BYTES = 256 * 1024
"""Answers this large are compressed on a worker thread (~3 ms at zlib's fastest level)."""
_VARY = (b"vary", b"accept-encoding")


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


async def compress_answer(response: Response, request_headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Compress ``response``'s body in place for a request whose ``Accept-Encoding`` asks for it
    (``Content-Length`` follows, ``Content-Encoding`` says which); called for answers of at least the
    minimum size only. An answer with a ``Content-Encoding`` of its own is left alone."""
    raw = response.raw_headers
    if any(name == b"content-encoding" for name, _ in raw):
        return
    raw.append(_VARY)
    accept = b", ".join(value for name, value in request_headers if name == b"accept-encoding")
    coding = answer_coding(accept.decode("latin-1")) if accept else None
    if coding is None:
        return
    body = response.body
    if len(body) >= OFF_LOOP_BYTES:
        data = await asyncio.to_thread(zlib.compress, body, zlib.Z_BEST_SPEED, _WBITS[coding])
    else:
        data = zlib.compress(body, zlib.Z_BEST_SPEED, _WBITS[coding])
    if len(data) > len(body) - len(body) // 8:  # not worth the client's time to undo
        return
    response.body = data
    raw[:] = [(name, value) for name, value in raw if name != b"content-length"]
    raw += [(b"content-length", str(len(data)).encode()), (b"content-encoding", coding.encode())]


@lru_cache(maxsize=256)
def answer_coding(accept_encoding: str) -> str | None:
    """``"gzip"`` or ``"deflate"``, whichever ``Accept-Encoding`` weighs more (gzip on a tie), if it weighs
    more than ``identity`` or as much; ``None`` for an identity answer. A coding without ``q`` weighs 1,
    one not listed what ``*`` weighs (else 0); a weight that is not a number counts as 0."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if name:
            weights["gzip" if name == "x-gzip" else name] = _weight(params)
    default = weights.get("*", 0.0)
    best = max(("gzip", "deflate"), key=lambda c: weights.get(c, default))  # gzip first on a tie
    weight = weights.get(best, default)
    return best if weight > 0 and weight >= weights.get("identity", 0.0) else None


def _weight(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return min(max(float(value.strip()), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0
