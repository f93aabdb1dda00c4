"""``read_body`` (service/protocols/http.py) on a real Starlette ``Request``: a body that came in one
message is returned as that object (a large body read straight into one ``bytearray`` is not copied
again), pieces are joined, and the limit is enforced on what arrives."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from service.errors import PayloadTooLarge
from service.protocols.http import read_body


def request(
    messages: list[Any], limit: int = 1 << 20, headers: list[tuple[bytes, bytes]] | None = None
) -> Request:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    app = SimpleNamespace(state=SimpleNamespace(dataplane=SimpleNamespace(max_body_bytes=limit)))
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers or [], "app": app}
    return Request(scope, receive)


def test_a_body_in_one_message_is_returned_as_it_came() -> None:
    body = bytearray(b"x" * 300_000)
    got = asyncio.run(read_body(request([{"type": "http.request", "body": body, "more_body": False}])))
    assert got is body  # not joined with Starlette's empty closing chunk into a copy


def test_pieces_are_joined_and_an_empty_body_is_empty() -> None:
    pieces = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    ]
    assert asyncio.run(read_body(request(pieces))) == b"abcd"
    assert asyncio.run(read_body(request([{"type": "http.request", "body": b"", "more_body": False}]))) == b""


def test_a_body_over_the_limit_is_refused_as_it_arrives() -> None:
    pieces = [{"type": "http.request", "body": b"a" * 60, "more_body": True}] * 2
    with pytest.raises(PayloadTooLarge, match="exceeds the limit of 100 bytes"):
        asyncio.run(read_body(request(pieces, limit=100)))
