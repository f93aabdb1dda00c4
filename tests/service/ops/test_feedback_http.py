"""``POST /v1/feedback`` over HTTP, in process: our real Starlette app (Admission middleware, routes,
error shape) over a real data plane, through httpx's ASGI transport; the body's decoding, the OpenAPI
document and the route's scope under access control."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.bento.app import build_app
from service.dataplane import DataPlane
from service.errors import InvalidInput, PayloadTooLarge
from service.limits import Limits
from service.models.registry import ModelRegistry
from service.ops.feedback import STORE_FILE
from service.protocols.access import AccessPolicy, digest
from service.protocols.feedback import parse_feedback
from service.protocols.gate import Gate
from service.protocols.openapi import openapi_document
from service.settings import Settings
from tests.service.modelfactory import write_scale_version
from tests.service.ops.test_feedback import CLASSES, wait_for_rows


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "expected a JSON object {model, feedback}, got list"),
        ({"feedback": [{"request_id": "a", "label": 1}]}, "field 'model' (string) is required"),
        ({"model": "m", "feedback": []}, "field 'feedback' must be a non-empty list"),
        ({"model": "m", "feedback": {"a": 1}}, "field 'feedback' must be a non-empty list"),
        ({"model": "m", "feedback": [], "extra": 1}, "unknown field(s) ['extra']"),
        ({"model": "m", "feedback": [3]}, "feedback[0] must be an object"),
        ({"model": "m", "feedback": [{"label": 1}]}, "feedback[0].request_id (string) is required"),
        ({"model": "m", "feedback": [{"request_id": 7, "label": 1}]}, "feedback[0].request_id (string)"),
        (
            {"model": "m", "feedback": [{"request_id": "a b", "label": 1}]},
            "feedback[0].request_id must be 1-128",
        ),
        ({"model": "m", "feedback": [{"request_id": "a"}]}, "exactly one of 'label'"),
        ({"model": "m", "feedback": [{"request_id": "a", "label": 1, "value": 2}]}, "exactly one of 'label'"),
        ({"model": "m", "feedback": [{"request_id": "a", "labels": 1}]}, "unknown field(s) ['labels']"),
        ({"model": "m", "feedback": [{"request_id": "a", "value": [[[[1]]]]}]}, "nested deeper than 3"),
    ],
)
def test_malformed_bodies_are_400_saying_what_was_expected(body: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_feedback(body, Limits(max_json_depth=3))
    assert message in error.value.message


def test_more_items_than_max_rows_is_413() -> None:
    body = {"model": "m", "feedback": [{"request_id": f"r{i}", "label": 0} for i in range(4)]}
    with pytest.raises(PayloadTooLarge, match="4 feedback items; the limit is 3"):
        parse_feedback(body, Limits(max_rows=3))
    model, items = parse_feedback(body, Limits(max_rows=4))
    assert model == "m" and [(i.request_id, i.field, i.truth) for i in items][:1] == [("r0", "label", 0)]


def test_the_route_is_documented_and_needs_the_inference_scope() -> None:
    document = openapi_document()
    operation = document["paths"]["/v1/feedback"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["model", "feedback"]
    assert schema["properties"]["feedback"]["items"]["required"] == ["request_id"]
    assert {"200", "400", "404", "413"} <= set(operation["responses"])
    policy = AccessPolicy([(digest("i" * 16), frozenset({"inference"}))])
    assert policy.http_scope("/v1/feedback") == "inference"


def test_without_a_token_the_gate_refuses_feedback() -> None:
    policy = AccessPolicy(
        [(digest("i" * 16), frozenset({"inference"})), (digest("a" * 16), frozenset({"admin"}))]
    )

    async def main() -> list[int]:
        app = Gate(build_app(), policy)
        body = {"model": "m", "feedback": [{"request_id": "r", "label": 0}]}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            codes = []
            for token in (None, "a" * 16):
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                codes.append((await client.post("/v1/feedback", json=body, headers=headers)).status_code)
            return codes

    assert asyncio.run(main()) == [401, 403], "no token: 401; an admin-only token: 403"


def test_predict_then_feedback_over_http(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_scale_version(repo, "c", 1, 1.0, labels=list(CLASSES))
    write_scale_version(repo, "plain", 1, 1.0)
    (repo / "serving.yaml").write_text("models:\n  c: {feedback: {enabled: true}}\n")
    settings = Settings(repository=repo, poll_interval_s=0, state_dir=tmp_path / "state")
    plane = DataPlane(ModelRegistry(settings))

    async def main() -> list[httpx.Response]:
        await plane.registry.start()
        app = build_app(plane)
        answers = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            for rid, row in (("h-1", [0, 5, 0, 0]), ("h-2", [7, 0, 0, 0])):
                body = {"model": "c", "inputs": [row]}
                answers.append(await client.post("/v1/predict", json=body, headers={"X-Request-Id": rid}))
            await asyncio.to_thread(wait_for_rows, tmp_path / "state" / STORE_FILE, 2)
            items = [{"request_id": "h-1", "label": "east"}, {"request_id": "h-2", "label": 3},
                     {"request_id": "h-3", "label": 0}, {"request_id": "h-1", "label": 1}]  # fmt: skip
            for body in (
                {"model": "c", "feedback": items},
                {"model": "c", "feedback": [{"request_id": "h-2", "value": 1.0}]},
                {"model": "nope", "feedback": items},
                {"model": "plain", "feedback": items},
            ):
                answers.append(await client.post("/v1/feedback", json=body))
            answers.append(await client.post("/v1/feedback", content=b"{not json"))
        await plane.registry.close()
        return answers

    predicted_1, predicted_2, matched, again, unknown, off, broken = asyncio.run(main())
    plane.ops.close()
    assert predicted_1.status_code == predicted_2.status_code == 200
    assert predicted_1.headers["x-request-id"] == "h-1"
    assert matched.status_code == 200, matched.text
    answer = matched.json()
    assert [(r["request_id"], r["status"]) for r in answer["results"]] == [
        ("h-1", "matched"), ("h-2", "matched"), ("h-3", "unknown"), ("h-1", "duplicate"),
    ]  # fmt: skip
    assert [r.get("correct") for r in answer["results"]] == [1, 0, None, None]
    assert answer["windows"] == [{"version": 1, "rows": 2, "accuracy": 0.5}]
    assert again.status_code == 200 and again.json()["results"][0]["status"] == "duplicate"
    assert unknown.status_code == 404 and "available models" in unknown.json()["error"]
    assert off.status_code == 400 and "takes no feedback" in off.json()["error"]
    assert broken.status_code == 400 and "malformed JSON" in broken.json()["error"]
