"""Answers compressed for clients that ask (:func:`service.protocols.encoding.compress_answer`): which
coding ``Accept-Encoding`` picks, the body and headers of a compressed answer, and the answers that stay
as they are; then through :class:`~service.protocols.dispatch.RestApp`, with its size threshold."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import zlib
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from service.protocols import encoding
from service.protocols.dispatch import RestApp
from service.protocols.encoding import answer_coding, compress_answer

JSON = json.dumps({"outputs": [[round(i * 0.001, 6) for i in range(10)] for _ in range(200)]}).encode()


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("gzip, deflate", "gzip"),  # requests' and aiohttp's default
        ("deflate, gzip", "gzip"),  # a tie goes to gzip
        ("gzip, deflate, br, zstd", "gzip"),  # curl --compressed, browsers
        ("deflate;q=1, gzip;q=0.5", "deflate"),
        ("GZIP;Q=0.3", "gzip"),
        ("x-gzip", "gzip"),
        ("*", "gzip"),
        ("gzip, identity", "gzip"),  # as good as identity: compressed
        ("gzip;q=0.5, identity", None),  # identity preferred
        ("gzip;q=0", None),
        ("*;q=0", None),
        ("br, zstd", None),  # nothing we write
        ("identity", None),
        ("gzip;q=abc", None),  # a weight that is not a number
        ("", None),
    ],
)
def test_accept_encoding_picks_the_coding(accept: str, coding: str | None) -> None:
    assert answer_coding(accept) == coding


def compressed(body: bytes, accept: str | None, **kwargs: Any) -> Response:
    response = Response(body, media_type="application/json", **kwargs)
    headers = [] if accept is None else [(b"accept-encoding", accept.encode())]
    asyncio.run(compress_answer(response, headers))
    return response


def headers_of(response: Response) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in response.raw_headers}


@pytest.mark.parametrize(("accept", "undo"), [("gzip", gzip.decompress), ("deflate", zlib.decompress)])
def test_a_compressed_answer_decodes_to_the_body(accept: str, undo: Any) -> None:
    response = compressed(JSON, accept)
    assert undo(response.body) == JSON and len(response.body) < len(JSON) // 2
    headers = headers_of(response)
    assert headers["content-encoding"] == accept and headers["vary"] == "accept-encoding"
    assert headers["content-length"] == str(len(response.body))
    assert [k for k, _ in response.raw_headers].count(b"content-length") == 1


def test_several_accept_encoding_headers_are_one_list() -> None:
    response = Response(JSON)
    asyncio.run(compress_answer(response, [(b"accept-encoding", b"br"), (b"accept-encoding", b"deflate")]))
    assert headers_of(response)["content-encoding"] == "deflate"


@pytest.mark.parametrize("accept", [None, "identity", "br"])
def test_an_answer_no_one_asked_to_compress_stays_but_says_vary(accept: str | None) -> None:
    response = compressed(JSON, accept)
    assert response.body == JSON
    headers = headers_of(response)
    assert "content-encoding" not in headers and headers["vary"] == "accept-encoding"
    assert headers["content-length"] == str(len(JSON))


def test_an_answer_that_would_not_shrink_by_an_eighth_stays() -> None:
    noise = os.urandom(64 * 1024)  # what raw float tensors are like to zlib
    response = compressed(noise, "gzip")
    assert response.body == noise and "content-encoding" not in headers_of(response)


def test_an_answer_with_a_coding_of_its_own_is_left_alone() -> None:
    body = gzip.compress(JSON)
    response = compressed(body, "gzip", headers={"Content-Encoding": "gzip"})
    assert response.body == body and "vary" not in headers_of(response)


def test_a_large_answer_is_compressed_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    to_thread = asyncio.to_thread

    async def recording(func: Any, *args: Any) -> Any:
        threads.append(len(args[0]))
        return await to_thread(func, *args)

    monkeypatch.setattr(encoding.asyncio, "to_thread", recording)
    big = JSON * (encoding.OFF_LOOP_BYTES // len(JSON) + 1)
    assert gzip.decompress(compressed(big, "gzip").body) == big
    compressed(JSON, "gzip")  # a small one on the loop
    assert threads == [len(big)]


async def echo(request: Request) -> Response:
    """As many bytes of text as the request's ``n`` asks."""
    n = int(request.query_params["n"])
    return Response((b"0.125," * n)[:n], media_type="text/plain")


@pytest.mark.parametrize(
    ("least", "n", "coded"), [(4096, 4096, True), (4096, 4095, False), (0, 65536, False)]
)
def test_the_app_compresses_answers_from_its_threshold_on(least: int, n: int, coded: bool) -> None:
    app = RestApp(routes=[Route("/echo", echo)], compress_min_bytes=least)
    with TestClient(app) as client:
        answer = client.get("/echo", params={"n": n}, headers={"Accept-Encoding": "gzip"})
    assert answer.status_code == 200 and answer.content.startswith(b"0.125,")  # the client decoded it
    assert (answer.headers.get("content-encoding") == "gzip") is coded
    assert ("vary" in answer.headers) is coded
