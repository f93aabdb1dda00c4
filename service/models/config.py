"""``serving.yaml``: which versions of each model to serve, labels, runtime and batching per model.

``<repo>/serving.yaml`` is optional; every field is optional and falls back to :class:`Settings`::

    models:
      cnn:
        policy: latest      # latest | all | specific
        latest: 2           # how many of the newest versions (policy: latest)
        versions: [1, 3]    # policy: specific
        labels: {stable: 1, canary: 3}
        runtime: onnx       # onnx | tensorflow | keras | openvino
        precision: fp32     # fp32 | int8 | bf16 (see below)
        onnx_providers: [CUDAExecutionProvider, CPUExecutionProvider]
        onnx_strict_providers: false   # true: a missing provider fails the load
        tensorrt_fp16: false
        max_batch_size: 128
        max_wait_ms: 0
        max_queue_rows: 16384
        max_queue_delay_ms: 500
        traffic: {stable: 90, canary: 10}     # split of requests naming neither version nor label
        shadow: {target: canary, percent: 10} # mirror 10 % of answered requests to another version
        capture: {percent: 1}                      # payload capture (service.ops.capture)
        feedback: {enabled: true, keep_s: 86400}   # remember predictions for POST /v1/feedback
        drift: {enabled: true, window_rows: 1000, sample_rows_per_s: 250}  # drift scores (service.ops.drift)

``precision`` picks the file and the arithmetic, once per load (a model never switches with load, so an
answer never depends on who else is in its batch): ``fp32`` runs ``model.onnx``; ``int8`` runs
``model.int8.onnx``, the static quantization the exporter writes when it passes its accuracy gate (recorded
under ``variants`` in ``metadata.json``; the onnx and openvino runtimes only); ``bf16`` runs ``model.onnx``
on OpenVINO with its bf16 hint where the CPU has bf16 (elsewhere fp32, with a warning; ONNX Runtime refuses
it). A missing variant fails that version's load with the export command in the message. A precision other
than fp32 shows in the provider text (``CPUExecutionProvider int8``, ``OpenVINO CPU bf16``).

:meth:`ModelPolicy.effective` is the one place a per-model value falls back to the server settings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.settings import Precision, RuntimeName, Settings

CONFIG_FILE = "serving.yaml"
T = TypeVar("T")


def _pick(own: T | None, default: T) -> T:
    """A per-model value where ``serving.yaml`` sets one (0 included), else the server's."""
    return default if own is None else own


@dataclass(frozen=True)
class ModelSettings:
    """What one model version runs with: its ``serving.yaml`` entry over the server settings (no
    defaults of its own: :meth:`ModelPolicy.effective` fills every field, from :class:`Settings` where
    the entry is silent)."""

    runtime: str
    onnx_providers: list[str]
    onnx_threads: int
    onnx_strict_providers: bool
    tensorrt_cache_dir: Path
    tensorrt_fp16: bool
    max_batch_size: int
    max_wait_ms: float
    max_queue_rows: int
    max_queue_delay_ms: float
    precision: str
    inline_run_us: float
    capture_percent: float
    feedback: bool
    feedback_keep_s: float
    drift: bool
    drift_window_rows: int
    drift_sample_rows_per_s: float


class DriftConfig(BaseModel):
    """``drift:`` of a model: drift scores against its versions' ``reference`` (:mod:`service.ops.drift`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    window_rows: int | None = Field(None, ge=10, le=1_000_000)
    sample_rows_per_s: float | None = Field(None, gt=0)


class CaptureConfig(BaseModel):
    """``capture:`` of a model: the share of its answers written to the capture files."""

    model_config = ConfigDict(extra="forbid")

    percent: float | None = Field(None, ge=0, le=100)


class FeedbackConfig(BaseModel):
    """``feedback:`` of a model: remember its predictions (for ``keep_s``) to match ``POST /v1/feedback``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    keep_s: float | None = Field(None, gt=0)


VARIANT_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""A traffic variant (label or version): it is echoed in ``X-Model-Variant`` and in metric labels."""


class ShadowPolicy(BaseModel):
    """``shadow``: mirror a share of a model's answered requests to another version (:mod:`service.ops.shadow`)."""

    model_config = ConfigDict(extra="forbid")

    target: int | str = Field(description="The shadow version: a label of the model or a version number.")
    percent: float = Field(gt=0, le=100, description="Share of answered requests mirrored, in percent.")


class ModelPolicy(BaseModel):
    """Per-model serving configuration from ``serving.yaml``; unset fields fall back to settings."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["latest", "all", "specific"] = "latest"
    latest: int = Field(1, ge=1)
    versions: list[int] = Field(default_factory=list)
    labels: dict[str, int] = Field(default_factory=dict)
    runtime: RuntimeName | None = None
    precision: Precision | None = None
    onnx_providers: list[str] | None = Field(None, min_length=1)
    onnx_strict_providers: bool | None = None
    tensorrt_fp16: bool | None = None
    max_batch_size: int | None = Field(None, ge=1)
    max_wait_ms: float | None = Field(None, ge=0)
    max_queue_rows: int | None = Field(None, ge=1)
    max_queue_delay_ms: float | None = Field(None, gt=0)
    traffic: dict[int | str, float] | None = None
    """Weighted split (variant: weight) of the requests that name neither version nor label."""
    shadow: ShadowPolicy | None = None
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    feedback: FeedbackConfig = Field(default_factory=lambda: FeedbackConfig(enabled=False))
    drift: DriftConfig = Field(default_factory=DriftConfig)

    @model_validator(mode="after")
    def _check_variants(self) -> ModelPolicy:
        """Traffic keys and the shadow target are labels of this model or version numbers; weights >= 0."""
        if self.traffic is not None:
            weights = list(self.traffic.values())
            if not all(0 <= w < math.inf for w in weights) or sum(weights) <= 0:
                raise ValueError(f"traffic: weights must be finite, >= 0 and one > 0; got {self.traffic}")
            if len({str(k) for k in self.traffic}) < len(self.traffic):
                raise ValueError(f"traffic: a variant is named twice: {list(self.traffic)}")
            for key in self.traffic:
                self.variant_version(key, "traffic")
        if self.shadow is not None:
            self.variant_version(self.shadow.target, "shadow.target")
        return self

    def variant_version(self, key: int | str, where: str = "variant") -> int:
        """The version a traffic variant or shadow target names: a label of this model or a version number."""
        text = str(key)
        if not VARIANT_KEY.fullmatch(text):
            raise ValueError(f"{where}: {text!r} is not a label or version (1-64 of A-Z a-z 0-9 _ . : -)")
        if text in self.labels:
            return self.labels[text]
        if text.isdigit() and int(text) > 0:
            return int(text)
        raise ValueError(
            f"{where}: {text!r} is neither a label of this model (labels: {sorted(self.labels)}) "
            "nor a version number"
        )

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve out of ``available`` (sorted ascending)."""
        ordered = sorted(available)
        if self.policy == "all":
            return ordered
        if self.policy == "specific":
            return [v for v in ordered if v in set(self.versions)]
        return ordered[-self.latest :]

    def effective(self, settings: Settings) -> ModelSettings:
        """This model's values, each unset one taken from ``settings``."""
        return ModelSettings(
            runtime=_pick(self.runtime, settings.runtime),
            onnx_providers=_pick(self.onnx_providers, settings.onnx_providers),
            onnx_threads=settings.onnx_threads,
            onnx_strict_providers=_pick(self.onnx_strict_providers, settings.onnx_strict_providers),
            tensorrt_cache_dir=settings.tensorrt_cache_dir,
            tensorrt_fp16=_pick(self.tensorrt_fp16, settings.tensorrt_fp16),
            max_batch_size=_pick(self.max_batch_size, settings.max_batch_size),
            max_wait_ms=_pick(self.max_wait_ms, settings.max_wait_ms),
            max_queue_rows=_pick(self.max_queue_rows, settings.max_queue_rows),
            max_queue_delay_ms=_pick(self.max_queue_delay_ms, settings.max_queue_delay_ms),
            precision=_pick(self.precision, settings.precision),
            inline_run_us=settings.inline_run_us,
            capture_percent=_pick(self.capture.percent, settings.capture_percent),
            feedback=self.feedback.enabled,
            feedback_keep_s=_pick(self.feedback.keep_s, settings.feedback_keep_s),
            drift=_pick(self.drift.enabled, settings.drift_enabled),
            drift_window_rows=_pick(self.drift.window_rows, settings.drift_window_rows),
            drift_sample_rows_per_s=_pick(self.drift.sample_rows_per_s, settings.drift_sample_rows_per_s),
        )


class RepositoryConfig(BaseModel):
    """The whole ``serving.yaml``."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelPolicy] = Field(default_factory=dict)

    def policy(self, name: str) -> ModelPolicy:
        return self.models.get(name, ModelPolicy())


class ConfigError(ValueError):
    """``serving.yaml`` exists but cannot be used."""


def load_config(root: Path) -> RepositoryConfig:
    """Parse ``serving.yaml``; a missing file means defaults, a broken one raises :class:`ConfigError`."""
    path = root / CONFIG_FILE
    if not path.exists():
        return RepositoryConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return RepositoryConfig.model_validate(raw)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
