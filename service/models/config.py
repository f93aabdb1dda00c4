"""``serving.yaml``: which versions of each model to serve, labels, runtime and batching per model.

``<repo>/serving.yaml`` is optional; every field is optional and falls back to :class:`Settings`::

    models:
      cnn:
        policy: latest      # latest | all | specific
        latest: 2           # how many of the newest versions (policy: latest)
        versions: [1, 3]    # policy: specific
        labels: {stable: 1, canary: 3}
        runtime: onnx       # onnx | tensorflow | keras
        onnx_providers: [CUDAExecutionProvider, CPUExecutionProvider]
        max_batch_size: 64
        max_wait_ms: 0
        max_queue_rows: 16384
        max_queue_delay_ms: 500

:meth:`ModelPolicy.effective` is the one place a per-model value falls back to the server settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.settings import RuntimeName, Settings

CONFIG_FILE = "serving.yaml"
T = TypeVar("T")


def _pick(own: T | None, default: T) -> T:
    """A per-model value where ``serving.yaml`` sets one (0 included), else the server's."""
    return default if own is None else own


@dataclass(frozen=True)
class ModelSettings:
    """What one model version runs with: its ``serving.yaml`` entry over the server settings."""

    runtime: str
    onnx_providers: list[str]
    onnx_threads: int
    max_batch_size: int
    max_wait_ms: float
    max_queue_rows: int
    max_queue_delay_ms: float


class ModelPolicy(BaseModel):
    """Per-model serving configuration from ``serving.yaml``; unset fields fall back to settings."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["latest", "all", "specific"] = "latest"
    latest: int = Field(1, ge=1)
    versions: list[int] = Field(default_factory=list)
    labels: dict[str, int] = Field(default_factory=dict)
    runtime: RuntimeName | None = None
    onnx_providers: list[str] | None = Field(None, min_length=1)
    max_batch_size: int | None = Field(None, ge=1)
    max_wait_ms: float | None = Field(None, ge=0)
    max_queue_rows: int | None = Field(None, ge=1)
    max_queue_delay_ms: float | None = Field(None, gt=0)

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
            max_batch_size=_pick(self.max_batch_size, settings.max_batch_size),
            max_wait_ms=_pick(self.max_wait_ms, settings.max_wait_ms),
            max_queue_rows=_pick(self.max_queue_rows, settings.max_queue_rows),
            max_queue_delay_ms=_pick(self.max_queue_delay_ms, settings.max_queue_delay_ms),
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
