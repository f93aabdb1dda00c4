"""The OpenAPI 3.1 document of the native REST surface (served at ``GET /v1/openapi.json``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    tensor = {"description": "A batch: nested lists of numbers, first dimension = rows.", "type": "array"}
    predict_request = {
        "type": "object",
        "required": ["model", "inputs"],
        "properties": {
            "model": {"type": "string", "example": "cnn"},
            "version": {"type": "integer", "minimum": 1},
            "label": {"type": "string", "example": "stable"},
            "inputs": {"oneOf": [tensor, {"type": "object", "additionalProperties": tensor}]},
            "outputs": {"type": "array", "items": {"type": "string"}},
        },
    }
    predict_response = {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "integer"},
            "runtime": {"type": "string", "enum": ["onnx", "tensorflow", "keras"]},
            "outputs": {"type": "object", "additionalProperties": tensor},
        },
    }
    plain_ok = {"200": {"description": "OK"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "keras-serving native API", "version": "1"},
        "paths": {
            "/v1/predict": {
                "post": {
                    "summary": "Predict with a model (default version, a version, or a label).",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": predict_request}},
                    },
                    "responses": {
                        "200": {
                            "description": "Outputs",
                            "content": {"application/json": {"schema": predict_response}},
                        },
                        "400": _error("Malformed JSON, wrong shape or dtype, empty or non-numeric input"),
                        "404": _error("Unknown model, version or label"),
                        "413": _error("Body over the size limit"),
                        "503": _error("Model not ready or overloaded (Retry-After set)"),
                        "500": _error("Internal error (no internals in the body)"),
                    },
                }
            },
            "/v1/models": {
                "get": {"summary": "Models, versions, states and signatures", "responses": plain_ok}
            },
            "/readyz/{model}": {
                "get": {
                    "summary": "Readiness of one model",
                    "parameters": [
                        {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
                }
            },
            "/livez": {"get": {"summary": "Process is alive", "responses": plain_ok}},
            "/readyz": {
                "get": {"summary": "Every served default version is loaded and warm", "responses": plain_ok}
            },
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": plain_ok}},
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                    "additionalProperties": True,
                }
            }
        },
    }
