"""The request schemas of the OpenAPI document, precise enough for generated requests to reach decoding
and inference: each protocol's body, path parameters listing the real models, versions and labels, and
constraints that are the server's own limits (a test holds both together)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from service.dataplane import DataPlane
from service.limits import Limits
from service.protocols.v2.spec import DATATYPES

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
VERSION_PATTERN = r"^[1-9][0-9]{0,17}$"


@dataclass(frozen=True)
class ModelDoc:
    """What the document says about one model: its versions, labels and first input's signature."""

    name: str
    versions: tuple[int, ...]
    labels: tuple[str, ...]
    input_name: str = "x"
    input_shape: tuple[int, ...] = (-1, 1)


Catalog = tuple[ModelDoc, ...]


def catalog_of(dataplane: DataPlane) -> Catalog:
    """The models the data plane knows now, for the document's enums and examples."""
    docs = []
    for name in dataplane.model_names():
        views = dataplane.versions(name)
        meta = next((v.metadata for v in reversed(views) if v.metadata is not None), None)
        first = meta.inputs[0] if meta and meta.inputs else None
        docs.append(
            ModelDoc(
                name,
                tuple(v.version for v in views),
                tuple(sorted(dataplane.labels(name))),
                first.name if first else "x",
                tuple(first.shape) if first else (-1, 1),
            )
        )
    return tuple(docs)


def path_schema(kind: str, catalog: Catalog, limits: Limits) -> dict[str, Any]:
    """Schema of the ``model``, ``version`` or ``label`` path parameter: the real values as an enum."""
    if kind == "model":
        values: list[str] = [m.name for m in catalog]
        base = {"type": "string", "pattern": NAME_PATTERN, "maxLength": limits.max_name_length}
    elif kind == "version":
        values = sorted({str(v) for m in catalog for v in m.versions}, key=int)
        base = {"type": "string", "pattern": VERSION_PATTERN}
    else:
        values = sorted({label for m in catalog for label in m.labels})
        base = {"type": "string", "maxLength": limits.max_name_length}
    return {**base, "enum": values, "examples": values[:3]} if values else base


def tensor_schema(limits: Limits) -> dict[str, Any]:
    """A JSON tensor: nested lists of numbers up to rank 4 (deeper is refused), at most ``max_rows`` rows."""
    level: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"type": "number"}}
    ranks = [level]
    for _ in range(3):
        level = {"type": "array", "minItems": 1, "items": level}
        ranks.append(level)
    return {
        "description": "A batch: nested lists of numbers, first dimension = rows.",
        "anyOf": [{**r, "maxItems": limits.max_rows} for r in ranks],
    }


def example_tensor(model: ModelDoc) -> list[Any]:
    """One row of zeros in the model's first input's shape (free dimensions = 1)."""
    value: Any = 0.0
    for size in reversed(model.input_shape[1:]):
        value = [value] * (size if size > 0 else 1)
    return [value]


def native_request(catalog: Catalog, limits: Limits) -> dict[str, Any]:
    tensor = tensor_schema(limits)
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["model", "inputs"],
        "properties": {
            "model": path_schema("model", catalog, limits),
            "version": {"type": "integer", "minimum": 1},
            "label": {"type": "string", "maxLength": limits.max_name_length},
            "inputs": {
                "anyOf": [
                    tensor,
                    {
                        "type": "object",
                        "additionalProperties": tensor,
                        "maxProperties": limits.max_inputs,
                        "minProperties": 1,
                    },
                ]
            },
            "outputs": {
                "type": "array",
                "maxItems": limits.max_inputs,
                "items": {"type": "string", "maxLength": limits.max_name_length},
            },
        },
    }
    if catalog:
        schema["example"] = {"model": catalog[0].name, "inputs": example_tensor(catalog[0])}
    return schema


def tfserving_request(catalog: Catalog, limits: Limits) -> dict[str, Any]:
    tensor = tensor_schema(limits)
    named = {
        "type": "object",
        "additionalProperties": tensor,
        "minProperties": 1,
        "maxProperties": limits.max_inputs,
    }
    signature = {"signature_name": {"type": "string", "enum": ["serving_default", ""]}}
    schema: dict[str, Any] = {
        "oneOf": [
            {
                "type": "object",
                "required": ["instances"],
                "additionalProperties": False,
                "properties": {**signature, "instances": tensor},
            },
            {
                "type": "object",
                "required": ["inputs"],
                "additionalProperties": False,
                "properties": {**signature, "inputs": {"anyOf": [tensor, named]}},
            },
        ]
    }
    if catalog:
        schema["example"] = {"instances": example_tensor(catalog[0])}
    return schema


def v2_request(catalog: Catalog, limits: Limits) -> dict[str, Any]:
    name = {"type": "string", "minLength": 1, "maxLength": limits.max_name_length}
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": name,
            "shape": {
                "type": "array",
                "maxItems": limits.max_json_depth,
                "items": {"type": "integer", "minimum": 0, "maximum": limits.max_elements},
            },
            "datatype": {"type": "string", "enum": sorted(DATATYPES)},
            "data": {
                "type": "array",
                "maxItems": limits.max_elements,
                "items": {"type": ["number", "boolean"]},
            },
            "parameters": {"type": "object"},
        },
    }
    output = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": name,
            "parameters": {
                "type": "object",
                "properties": {
                    "binary_data": {"type": "boolean"},
                    "classification": {"type": "integer", "minimum": 1, "description": "Top classes (BYTES)"},
                },
            },
        },
    }
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "minItems": 1, "maxItems": limits.max_inputs, "items": tensor},
            "outputs": {"type": "array", "maxItems": limits.max_inputs, "items": output},
            "parameters": {"type": "object"},
        },
    }
    if catalog:
        model = catalog[0]
        shape = [1, *(d if d > 0 else 1 for d in model.input_shape[1:])]
        data = [0.0] * math.prod(shape)
        schema["example"] = {
            "inputs": [{"name": model.input_name, "shape": shape, "datatype": "FP32", "data": data}]
        }
    return schema


def feedback_request(catalog: Catalog, limits: Limits) -> dict[str, Any]:
    """``POST /v1/feedback``: a model and its true labels (classifiers) or values (regressors) by request id."""
    label = {
        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "maxLength": limits.max_name_length}]
    }
    # a regressor's true values: one number, or one per row (a number or a row of the model's outputs)
    number = {"type": "number"}
    row = {"anyOf": [number, {"type": "array", "minItems": 1, "items": number}]}
    item = {
        "type": "object",
        "description": "Exactly one of 'label' (class index or name; a list, one per row) or 'value' "
        "(number(s), one per row).",
        "required": ["request_id"],
        "oneOf": [{"required": ["label"]}, {"required": ["value"]}],
        "additionalProperties": False,
        "properties": {
            "request_id": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[!-~]+$"},
            "label": {
                "anyOf": [
                    label,
                    {"type": "array", "minItems": 1, "maxItems": limits.max_rows, "items": label},
                ]
            },
            "value": {
                "anyOf": [number, {"type": "array", "minItems": 1, "maxItems": limits.max_rows, "items": row}]
            },
        },
    }
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["model", "feedback"],
        "additionalProperties": False,
        "properties": {
            "model": path_schema("model", catalog, limits),
            "feedback": {"type": "array", "minItems": 1, "maxItems": limits.max_rows, "items": item},
        },
    }
    if catalog:
        schema["example"] = {"model": catalog[0].name, "feedback": [{"request_id": "req-1", "label": 0}]}
    return schema
