"""The OpenAPI 3.1 document of every REST route (served at ``GET /v1/openapi.json``)."""

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
        "info": {"title": "keras-serving REST API (native, TF Serving, KServe V2)", "version": "1"},
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
            **_compat_paths(),
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


def _path_param(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


def _compat_paths() -> dict[str, Any]:
    """TF Serving and KServe V2 REST routes (their bodies follow those projects' own documents)."""
    json_body = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    errors = {
        "400": _error("Bad input"),
        "404": _error("Unknown model/version/label"),
        "503": _error("Not ready"),
    }
    ok = {"200": {"description": "OK"}}
    paths: dict[str, Any] = {}
    for suffix, params in (("", ()), ("/versions/{version}", ("version",)), ("/labels/{label}", ("label",))):
        base = "/v1/models/{model}" + suffix
        parameters = _path_param("model", *params)
        tag = ["TF Serving REST"]
        paths[base + ":predict"] = {"post": {"tags": tag, "summary": "TF Serving predict (instances or inputs)",
                                             "parameters": parameters, "requestBody": json_body,
                                             "responses": {**ok, **errors}}}  # fmt: skip
        paths[base] = {"get": {"tags": tag, "summary": "Model version status", "parameters": parameters,
                               "responses": {**ok, "404": errors["404"]}}}  # fmt: skip
        paths[base + "/metadata"] = {"get": {"tags": tag, "summary": "Signature definition",
                                             "parameters": parameters, "responses": {**ok, "404": errors["404"]}}}  # fmt: skip
    v2 = ["KServe V2 REST"]
    paths["/v2"] = {"get": {"tags": v2, "summary": "Server metadata", "responses": ok}}
    paths["/v2/health/live"] = {"get": {"tags": v2, "summary": "Liveness", "responses": ok}}
    paths["/v2/health/ready"] = {
        "get": {"tags": v2, "summary": "Readiness", "responses": {**ok, "503": errors["503"]}}
    }
    for suffix, params in (("", ()), ("/versions/{version}", ("version",))):
        base = "/v2/models/{model}" + suffix
        parameters = _path_param("model", *params)
        paths[base] = {"get": {"tags": v2, "summary": "Model metadata", "parameters": parameters,
                               "responses": {**ok, "404": errors["404"]}}}  # fmt: skip
        paths[base + "/ready"] = {"get": {"tags": v2, "summary": "Model readiness", "parameters": parameters,
                                          "responses": {**ok, "503": errors["503"]}}}  # fmt: skip
        paths[base + "/infer"] = {"post": {"tags": v2, "summary": "Inference (JSON or binary tensor extension)",
                                           "parameters": parameters, "requestBody": json_body,
                                           "responses": {**ok, **errors}}}  # fmt: skip
    return paths
