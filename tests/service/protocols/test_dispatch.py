"""The REST app's dispatch (:mod:`service.protocols.dispatch`): the same answers as Starlette's router for
every kind of path, matches remembered per worker (bounded, never the catch-alls), an endpoint's bug
answered as our 500; and the real app over a real data plane answering the hot routes through it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.bento.app import build_app
from service.dataplane import DataPlane
from service.models.registry import ModelRegistry
from service.protocols import dispatch
from service.protocols.admission import Admission
from service.protocols.dispatch import Dispatch, RestApp
from service.protocols.http import guarded, json_response
from service.settings import Settings
from tests.service.modelfactory import write_scale_version


@guarded
async def echo(request: Request) -> Response:
    return json_response({"params": request.path_params, "method": request.method})


async def broken(request: Request) -> Response:  # not guarded: a bug the dispatch must answer
    raise RuntimeError("a bug")


def _routes() -> list[Route]:
    return [
        Route("/v1/predict", echo, methods=["POST"]),
        Route("/ready/{model}", echo, methods=["GET"]),
        Route("/m/{model}/versions/{version:int}/infer", echo, methods=["POST"]),
        Route("/m/{model}", echo, methods=["GET"]),
        Route("/page", echo, methods=["GET"]),
        Route("/broken", broken, methods=["POST"]),
        Route("/v1/{path:path}", echo, methods=["GET", "POST", "PUT", "DELETE"]),
    ]


REQUESTS = [
    ("POST", "/v1/predict"),
    ("GET", "/v1/predict"),  # partial match, then the catch-all takes it
    ("GET", "/ready/cnn"),
    ("HEAD", "/ready/cnn"),
    ("POST", "/ready/cnn"),  # 405 with Allow
    ("POST", "/m/cnn/versions/3/infer"),
    ("POST", "/m/cnn/versions/x/infer"),  # the int convertor does not match: 404
    ("GET", "/m/a%20b"),
    ("GET", "/page/"),  # a redirect over the trailing slash
    ("GET", "/nowhere"),
    ("DELETE", "/v1/anything/at/all"),
]


async def _answers(
    app: Any, requests: list[tuple[str, str]]
) -> list[tuple[int, str, str | None, str | None]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", follow_redirects=False) as client:
        out = []
        for method, path in requests:
            r = await client.request(method, path)
            out.append((r.status_code, r.text, r.headers.get("allow"), r.headers.get("location")))
        return out


def test_every_kind_of_path_gets_starlettes_answer_twice() -> None:
    """Answered once unknown and once remembered, each the same as plain Starlette's."""
    middleware = [Middleware(Admission, protocol_of=lambda path: "native")]
    starlette = Starlette(routes=_routes(), middleware=middleware)
    ours = RestApp(routes=_routes(), middleware=middleware)
    for app in (starlette, ours):
        app.state.dataplane = None
    want = asyncio.run(_answers(starlette, REQUESTS))
    got = asyncio.run(_answers(ours, REQUESTS * 2))
    assert got == want * 2
    assert {w[0] for w in want} == {200, 307, 404, 405}, "the table covers every kind of answer"


def test_full_matches_are_remembered_but_not_the_catch_alls() -> None:
    seen: list[str] = []

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await Response(status_code=404)(scope, receive, send)

    app = Dispatch(_routes(), fallback)
    answers = asyncio.run(
        _answers(app, [("POST", "/m/a/versions/1/infer"), ("POST", "/m/b/versions/2/infer")] * 2)
    )
    assert [a[0] for a in answers] == [200] * 4
    assert '"params":{"model":"b","version":2}' in answers[3][1], "each path keeps its own parameters"
    assert set(app._known) == {("POST", "/m/a/versions/1/infer"), ("POST", "/m/b/versions/2/infer")}
    asyncio.run(_answers(app, [("GET", "/v1/x"), ("GET", "/v1/y"), ("POST", "/ready/cnn")]))
    assert len(app._known) == 2, "catch-all matches and partial matches are not remembered"
    assert seen == ["/ready/cnn"], "a partial match goes to Starlette"


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "REMEMBERED", 3)

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("every request here matches fully")

    app = Dispatch(_routes(), fallback)
    answers = asyncio.run(_answers(app, [("GET", f"/m/model-{i}") for i in range(10)]))
    assert [a[0] for a in answers] == [200] * 10
    assert 1 <= len(app._known) <= 3


def test_an_endpoints_bug_is_our_json_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    app = RestApp(routes=_routes())
    with caplog.at_level(logging.ERROR, logger="service.http"):
        (answer,) = asyncio.run(_answers(app, [("POST", "/broken")]))
    assert answer[0] == 500
    assert '"error"' in answer[1] and "a bug" not in answer[1], "no internals in the answer"
    assert "unhandled error on POST /broken" in caplog.text and "a bug" in caplog.text


def test_the_real_app_answers_its_hot_routes_through_the_dispatch(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_scale_version(repo, "a", 1, 2.0)
    write_scale_version(repo, "b", 1, 3.0)
    plane = DataPlane(ModelRegistry(Settings(repository=repo, poll_interval_s=0)))
    row = [1.0, 2.0, 3.0, 4.0]

    async def main() -> list[httpx.Response]:
        await plane.registry.start()
        app = build_app(plane)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answers = []
            for _ in range(2):
                answers.append(await client.post("/v1/predict", json={"model": "a", "inputs": [row]}))
                for name in ("a", "b"):
                    v2 = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": row}]}
                    answers.append(await client.post(f"/v2/models/{name}/infer", json=v2))
            answers.append(await client.get("/v2/models/a/nope"))
        stack = app.middleware_stack
        assert isinstance(stack, Admission) and isinstance(stack.app, Dispatch)
        known = stack.app._known
        assert ("POST", "/v2/models/b/infer") in known and ("POST", "/v1/predict") in known
        await plane.registry.close()
        plane.ops.close()
        return answers

    *answers, unknown = asyncio.run(main())
    assert [a.status_code for a in answers] == [200] * 6
    native, v2a, v2b = answers[3:]
    assert np.allclose(native.json()["outputs"]["y"], [[2.0, 4.0, 6.0, 8.0]])
    assert np.allclose(v2a.json()["outputs"][0]["data"], [2.0, 4.0, 6.0, 8.0])
    assert np.allclose(v2b.json()["outputs"][0]["data"], [3.0, 6.0, 9.0, 12.0])
    assert "x-request-id" in native.headers, "Admission still wraps the dispatched routes"
    assert unknown.status_code == 404 and "no route GET /v2/models/a/nope" in unknown.json()["error"]
