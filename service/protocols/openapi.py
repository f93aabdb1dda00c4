"""The OpenAPI 3.1 document of every REST route (served at ``GET /v1/openapi.json``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from service.limits import DEFAULT_LIMITS, Limits
from service.protocols.docs import ASSETS as DOCS_ASSETS
from service.protocols.openapi_schemas import (
    Catalog,
    feedback_request,
    native_request,
    path_schema,
    tensor_schema,
    tfserving_request,
    v2_request,
)
from service.protocols.ui import ASSETS

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


UNSUPPORTED_ENCODING = _error("A Content-Encoding other than gzip, deflate or identity")


@lru_cache(maxsize=4)
def openapi_document(catalog: Catalog = (), limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The document; ``catalog`` (the models served now) fills the path parameters' enums and the
    examples, ``limits`` the request schemas' constraints."""
    tensor = tensor_schema(limits)
    predict_request = native_request(catalog, limits)
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
                        "413": _error("Body, rows, elements or inputs over the limits"),
                        "415": UNSUPPORTED_ENCODING,
                        "503": _error("Model not ready or overloaded (Retry-After set)"),
                        "500": _error("Internal error (no internals in the body)"),
                    },
                }
            },
            "/v1/models": {
                "get": {"summary": "Models, versions, states and signatures", "responses": plain_ok}
            },
            "/v1/feedback": {
                "post": {
                    "summary": "True labels or values for answered request ids: live accuracy or error.",
                    "requestBody": _body(feedback_request(catalog, limits)),
                    "responses": {
                        "200": {
                            "description": "One result per item (matched, unknown, wrong_model, duplicate, "
                            "bad_label) and the window figures per version",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _error("Malformed body, or the model takes no feedback (serving.yaml)"),
                        "404": _error("Unknown model"),
                        "413": _error("Body or items over the limits"),
                        "415": UNSUPPORTED_ENCODING,
                        "503": _error("Still loading the models"),
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {"summary": "This document (/docs.json adds BentoML's routes)", "responses": plain_ok}
            },
            "/readyz/{model}": {
                "get": {
                    "summary": "Readiness of one model",
                    "parameters": _path_param(catalog, limits, "model"),
                    "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
                }
            },
            "/livez": {"get": {"summary": "Process is alive", "responses": plain_ok}},
            "/readyz": {
                "get": {"summary": "Every served default version is loaded and warm", "responses": plain_ok}
            },
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": plain_ok}},
            **_compat_paths(catalog, limits),
            **_ui_paths(),
            **_docs_paths(),
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


def _path_param(catalog: Catalog, limits: Limits, *names: str) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "path", "required": True, "schema": path_schema(n, catalog, limits)} for n in names
    ]


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _compat_paths(catalog: Catalog, limits: Limits) -> dict[str, Any]:
    """TF Serving and KServe V2 REST routes (their bodies follow those projects' own documents)."""
    tf_body, v2_body = _body(tfserving_request(catalog, limits)), _body(v2_request(catalog, limits))
    errors = {
        "400": _error("Bad input"),
        "404": _error("Unknown model/version/label"),
        "413": _error("Body, rows, elements or inputs over the limits"),
        "415": UNSUPPORTED_ENCODING,
        "503": _error("Not ready"),
    }
    ok = {"200": {"description": "OK"}}
    paths: dict[str, Any] = {}
    for suffix, params in (("", ()), ("/versions/{version}", ("version",)), ("/labels/{label}", ("label",))):
        base = "/v1/models/{model}" + suffix
        parameters = _path_param(catalog, limits, "model", *params)
        tag = ["TF Serving REST"]
        paths[base + ":predict"] = {"post": {"tags": tag, "summary": "TF Serving predict (instances or inputs)",
                                             "parameters": parameters, "requestBody": tf_body,
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
        parameters = _path_param(catalog, limits, "model", *params)
        paths[base] = {"get": {"tags": v2, "summary": "Model metadata", "parameters": parameters,
                               "responses": {**ok, "404": errors["404"]}}}  # fmt: skip
        paths[base + "/ready"] = {"get": {"tags": v2, "summary": "Model readiness", "parameters": parameters,
                                          "responses": {**ok, "503": errors["503"]}}}  # fmt: skip
        paths[base + "/infer"] = {"post": {"tags": v2, "summary": "Inference (JSON or binary tensor extension)",
                                           "parameters": parameters, "requestBody": v2_body,
                                           "responses": {**ok, **errors}}}  # fmt: skip
        for what, summary in (
            ("config", "Model configuration (Triton's ModelConfig)"),
            ("stats", "Statistics of the model's versions, or of one"),
        ):
            paths[f"{base}/{what}"] = {"get": {"tags": v2, "summary": summary, "parameters": parameters,
                                               "responses": {**ok, "404": errors["404"]}}}  # fmt: skip
    paths["/v2/models/stats"] = {"get": {"tags": v2, "summary": "Statistics of every model version",
                                         "responses": ok}}  # fmt: skip
    index_body = {"type": "object", "properties": {"ready": {"type": "boolean", "default": False}},
                  "additionalProperties": True}  # fmt: skip
    paths["/v2/repository/index"] = {"post": {
        "tags": v2, "summary": "Every known model version and its state (ready ones only with ready: true)",
        "requestBody": {"required": False, "content": {"application/json": {"schema": index_body}}},
        "responses": {**ok, "400": errors["400"]}}}  # fmt: skip
    settings = {"type": "object", "additionalProperties": {"type": ["boolean", "integer", "string", "null"]},
                "example": {"log_verbose_level": 1}}  # fmt: skip
    paths["/v2/logging"] = {
        "get": {"tags": v2, "summary": "Log settings (Triton's logging extension; admin scope)", "responses": ok},
        "post": {"tags": v2, "summary": "Change log settings in every worker (null: back to the start value)",
                 "requestBody": {"required": True, "content": {"application/json": {"schema": settings}}},
                 "responses": {**ok, "400": errors["400"]}}}  # fmt: skip
    name = [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}]
    for action in ("load", "unload"):
        paths[f"/v2/repository/models/{{model}}/{action}"] = {"post": {
            "tags": v2, "summary": f"Explicit model {action}: not enabled (the polled repository decides)",
            "parameters": name, "responses": {"409": _error("Not enabled; the message says what to do")}}}  # fmt: skip
    return paths


def _ui_paths() -> dict[str, Any]:
    """The playground page and its two files (HTML, JavaScript, CSS; not JSON)."""
    tag = ["Playground"]
    page = {"200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}}
    asset = {
        "200": {
            "description": "The file",
            "content": {
                "text/javascript": {"schema": {"type": "string"}},
                "text/css": {"schema": {"type": "string"}},
            },
        },
        "404": _error(f"No such file (only {', '.join(sorted(ASSETS))} are served)"),
    }
    file_param = {
        "name": "file",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": sorted(ASSETS)},
    }
    return {
        "/ui": {"get": {"tags": tag, "summary": "Playground web page", "responses": page}},
        "/ui/{file}": {
            "get": {
                "tags": tag,
                "summary": "The page's script or style sheet",
                "parameters": [file_param],
                "responses": asset,
            }
        },
    }


def _docs_paths() -> dict[str, Any]:
    """The Swagger UI page, its files and the merged document it shows (BentoML's routes included)."""
    tag = ["Documentation"]
    files = {
        "name": "file",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": sorted(DOCS_ASSETS)},
    }
    page = {"200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}}
    asset = {
        "200": {"description": "The file"},
        "404": _error(f"No such file (only {', '.join(sorted(DOCS_ASSETS))})"),
    }
    document = {
        "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}
    }
    return {
        "/docs": {"get": {"tags": tag, "summary": "Swagger UI over /docs.json", "responses": page}},
        "/docs/{file}": {"get": {"tags": tag, "summary": "Swagger UI's files", "parameters": [files], "responses": asset}},
        "/docs.json": {"get": {"tags": tag, "summary": "This document plus BentoML's routes (its typed API included)",
                               "responses": document}},
    }  # fmt: skip
