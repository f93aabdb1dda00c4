"""``POST /v1/feedback``: true labels (classifiers) or values (regressors) for answered request ids.

Request::

    {"model": "mlp", "feedback": [{"request_id": "r-1", "label": 1},
                                  {"request_id": "r-2", "label": "above_median"},
                                  {"request_id": "r-3", "label": [0, 1, 1]}]}      # a 3-row request
    {"model": "rnn", "feedback": [{"request_id": "r-4", "value": 26.1}]}

A label is a class index or a class name; a request of several rows takes a list, one per row. A regressor
takes ``value``: a number, or one per row (nested like the model's output). Answer (200)::

    {"model": "mlp", "results": [{"request_id": "r-1", "status": "matched", "version": 1, "rows": 1,
     "correct": 1}, {"request_id": "r-9", "status": "unknown", "error": "..."}],
     "counts": {"matched": 1, "unknown": 1}, "windows": [{"version": 1, "rows": 120, "accuracy": 0.82}]}

``status``: ``matched``, ``unknown`` (no prediction remembered for that id), ``wrong_model`` (answered by
another model), ``duplicate`` (had its feedback already) or ``bad_label`` (does not fit the prediction).
A malformed body is a 400 saying what was expected; an unknown model 404; a model without feedback on
400. The work is :class:`service.ops.feedback.Feedback`'s; this module only decodes and encodes.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.context import check_request_id
from service.errors import InvalidInput, PayloadTooLarge
from service.limits import DEFAULT_LIMITS, Limits
from service.ops.feedback_store import Item
from service.protocols.http import dataplane_of, guarded, json_response, read_body
from service.protocols.json import check_depth, loads

FIELDS = ("label", "value")


def parse_feedback(payload: Any, limits: Limits = DEFAULT_LIMITS) -> tuple[str, list[Item]]:
    """The model and the items of a feedback body (400 when malformed, 413 over ``max_rows`` items)."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"expected a JSON object {{model, feedback}}, got {type(payload).__name__}")
    unknown = sorted(set(payload) - {"model", "feedback"})
    if unknown:
        raise InvalidInput(f"unknown field(s) {unknown}; a feedback body has 'model' and 'feedback'")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInput("field 'model' (string) is required")
    limits.check_name("model", model)
    raw = payload.get("feedback")
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("field 'feedback' must be a non-empty list of {request_id, label | value}")
    if len(raw) > limits.max_rows:
        raise PayloadTooLarge(
            f"{len(raw)} feedback items; the limit is {limits.max_rows}", limit=limits.max_rows
        )
    return model, [_item(entry, f"feedback[{i}]", limits) for i, entry in enumerate(raw)]


def _item(entry: Any, where: str, limits: Limits) -> Item:
    if not isinstance(entry, dict):
        raise InvalidInput(
            f"{where} must be an object {{request_id, label | value}}, got {type(entry).__name__}"
        )
    unknown = sorted(set(entry) - {"request_id", *FIELDS})
    if unknown:
        raise InvalidInput(
            f"{where}: unknown field(s) {unknown}; expected 'request_id' and 'label' or 'value'"
        )
    request_id = entry.get("request_id")
    if not isinstance(request_id, str):
        raise InvalidInput(f"{where}.request_id (string) is required, got {request_id!r:.60}")
    check_request_id(request_id, f"{where}.request_id")
    given = [f for f in FIELDS if f in entry]
    if len(given) != 1:
        raise InvalidInput(
            f"{where} needs exactly one of 'label' (classifiers: class index or name) or 'value' "
            f"(regressors: number(s)); got {given or 'neither'}"
        )
    truth = entry[given[0]]
    check_depth(truth, f"{where}.{given[0]}", limits.max_json_depth)
    return Item(request_id, given[0], truth)


@guarded
async def feedback(request: Request) -> Response:
    """Match true labels or values with the predictions of their request ids."""
    dataplane = dataplane_of(request)
    model, items = parse_feedback(loads(await read_body(request)), dataplane.limits)
    return json_response(await dataplane.ops.feedback.submit(model, items))


routes = [Route("/v1/feedback", feedback, methods=["POST"])]
