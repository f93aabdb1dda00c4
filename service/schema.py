"""The ``metadata.json`` contract between the exporter (``training/``) and the server (``service/``).

Every model version directory ``models/<name>/<version>/`` holds one ``metadata.json`` that validates
against :class:`ModelMetadata`. The exporter writes it; the server reads nothing else to learn a
model's signature, so the two sides cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1
SUPPORTED_DTYPES = ("float32", "float64", "int32", "int64")


class TensorSpec(BaseModel):
    """One named input or output tensor. ``shape[0]`` is the batch dimension and is always ``-1``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Tensor name as the ONNX graph and the SavedModel signature know it.")
    dtype: str = Field(description="NumPy dtype name, e.g. float32.")
    shape: list[int] = Field(description="Full shape with -1 for dynamic dimensions; shape[0] is the batch.")

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in SUPPORTED_DTYPES:
            raise ValueError(f"dtype must be one of {SUPPORTED_DTYPES}, got {value!r}")
        return value

    @field_validator("shape")
    @classmethod
    def _dynamic_batch(cls, value: list[int]) -> list[int]:
        if not value or value[0] != -1:
            raise ValueError(f"shape[0] must be -1 (dynamic batch), got {value}")
        return value


class Parity(BaseModel):
    """Max absolute output difference between formats on held-out inputs, recorded at export."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(ge=256)
    tolerance: float
    onnx_vs_saved_model: float
    onnx_vs_keras: float
    passed: bool


class ModelMetadata(BaseModel):
    """Everything the server needs to know about one exported model version."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    name: str
    version: int = Field(ge=1)
    created: str = Field(description="ISO-8601 UTC time of export.")
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    labels: list[str] | None = Field(default=None, description="Class names for classifier outputs.")
    input_contract: str = Field(description="Human-readable statement of what a client sends.")
    example: dict[str, Any] = Field(description="One valid request batch (input name -> nested list).")
    metrics: dict[str, float]
    dataset: dict[str, Any]
    training_seconds: float
    framework_versions: dict[str, str]
    artifacts: dict[str, str] = Field(description="Artifact path (relative) -> sha256 hex digest.")
    parity: Parity
