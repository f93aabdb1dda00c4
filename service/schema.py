"""The ``metadata.json`` contract between the exporter (``training/``) and the server (``service/``).

Every model version directory ``models/<name>/<version>/`` holds one ``metadata.json`` that validates
against :class:`ModelMetadata`. The exporter writes it; the server reads nothing else to learn a
model's signature, so the two sides cannot drift apart silently.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


class Variant(BaseModel):
    """One precision variant next to ``model.onnx`` (``metadata.json`` ``variants.<precision>``), exported
    or not: the held-out metric beside fp32's and the gate that decided (:mod:`training.variants`)."""

    model_config = ConfigDict(extra="forbid")

    exported: bool = Field(description="False when the gate (or the model) ruled the variant out.")
    file: str | None = Field(None, description="Artifact path, e.g. model.int8.onnx (exported only).")
    sha256: str | None = Field(None, description="sha256 of the file (also under artifacts).")
    method: str | None = Field(None, description="How the variant was made (quantizer, format, calibration).")
    metric: str | None = Field(None, description="The held-out metric the gate compares, e.g. accuracy.")
    fp32: float | None = Field(None, description="That metric for model.onnx on the held-out set.")
    value: float | None = Field(None, description="That metric for the variant on the same set.")
    loss: float | None = Field(None, description="How much worse the variant is, in gate_unit (<0: better).")
    gate: float | None = Field(None, description="Largest loss exported, in gate_unit.")
    gate_unit: str | None = Field(None, description="points (accuracy x 100) or percent (relative MSE).")
    max_abs_deviation: float | None = Field(None, description="Max |variant - fp32| over held-out outputs.")
    samples: int | None = Field(None, description="Held-out inputs the metric and the deviation ran on.")
    reason: str | None = Field(None, description="Why the variant was not exported.")

    @model_validator(mode="after")
    def _consistent(self) -> Variant:
        if self.exported and not (self.file and self.sha256):
            raise ValueError("an exported variant needs file and sha256")
        if not self.exported and not self.reason:
            raise ValueError("a variant that was not exported needs a reason")
        return self


DriftStatistic = Literal["input_feature", "pixel_intensity", "ink_mass", "predicted_class", "output_value"]
MAX_REFERENCE_GROUPS = 64
"""At most this many groups per version: each is a ``feature`` label value of ``serving_drift_score``."""


class ReferenceGroup(BaseModel):
    """How the training rows fall into the bins of one statistic (:mod:`service.ops.drift_stats`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="The feature group, e.g. f0..f9, intensity, ink_mass, prediction: the `feature` label.",
    )
    statistic: DriftStatistic = Field(description="What is binned (service/ops/drift_stats.py).")
    index: int | None = Field(None, ge=0, description="input_feature only: position in the flattened row.")
    edges: list[float] = Field(
        default_factory=list,
        description="Inner cut points, ascending: bin i holds edges[i-1] <= v < edges[i], the outer bins "
        "are open-ended. Empty for predicted_class (bin = class).",
    )
    proportions: list[float] = Field(
        min_length=2, description="Share of the training values in each bin (len(edges) + 1; classes)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ReferenceGroup:
        if (self.statistic == "input_feature") != (self.index is not None):
            raise ValueError(f"group {self.name!r}: index goes with input_feature, and only with it")
        if not all(math.isfinite(e) for e in self.edges) or any(
            b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)
        ):
            raise ValueError(f"group {self.name!r}: edges must be finite and strictly ascending")
        if self.statistic == "predicted_class":
            if self.edges:
                raise ValueError(f"group {self.name!r}: predicted_class takes no edges (bin = class)")
        elif len(self.proportions) != len(self.edges) + 1:
            raise ValueError(
                f"group {self.name!r}: {len(self.edges)} edges make {len(self.edges) + 1} bins, "
                f"got {len(self.proportions)} proportions"
            )
        if any(not 0 <= p <= 1 for p in self.proportions) or abs(sum(self.proportions) - 1) > 1e-3:
            raise ValueError(f"group {self.name!r}: proportions must be in [0, 1] and sum to 1")
        return self


class Reference(BaseModel):
    """Training statistics recorded at export, which the server compares served traffic against."""

    model_config = ConfigDict(extra="forbid")

    rows: int = Field(ge=1, description="Training rows the statistics were computed on.")
    source: str = Field(description="Which rows, in words (e.g. a seeded sample of the training inputs).")
    groups: list[ReferenceGroup] = Field(min_length=1, max_length=MAX_REFERENCE_GROUPS)

    @field_validator("groups")
    @classmethod
    def _unique_names(cls, value: list[ReferenceGroup]) -> list[ReferenceGroup]:
        names = [g.name for g in value]
        if len(set(names)) != len(names):
            raise ValueError(f"group names must be unique, got {names}")
        return value


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
    reference: Reference | None = Field(
        None,
        description="Training statistics for drift detection (service/ops/drift.py); absent in versions "
        "exported before it, and then drift is off for the version.",
    )
    variants: dict[str, Variant] = Field(
        default_factory=dict,
        description="Precision name (int8) -> its variant; absent in metadata written before variants.",
    )

    @model_validator(mode="after")
    def _variant_files_recorded(self) -> ModelMetadata:
        for precision, variant in self.variants.items():
            if variant.exported and self.artifacts.get(variant.file or "") != variant.sha256:
                raise ValueError(
                    f"variants.{precision}: {variant.file} is not under artifacts with its sha256"
                )
        return self
