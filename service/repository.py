"""Reading the model repository: which models and versions exist and which of them to serve.

Layout: ``<repo>/<name>/<version>/metadata.json`` (plus artifacts). Directories whose name starts
with a dot (the exporter's staging area) and version directories without ``metadata.json`` are
ignored, so a half-written model is never seen. ``<repo>/serving.yaml`` optionally sets, per model,
the version policy, labels, runtime and batching::

    models:
      cnn:
        policy: latest      # latest | all | specific
        latest: 2           # how many of the newest versions (policy: latest)
        versions: [1, 3]    # policy: specific
        labels: {stable: 1, canary: 3}
        runtime: onnx       # onnx | tensorflow | keras
        max_batch_size: 64
        max_wait_ms: 0
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.settings import RuntimeName

CONFIG_FILE = "serving.yaml"


class ModelPolicy(BaseModel):
    """Per-model serving configuration from ``serving.yaml``; unset fields fall back to settings."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["latest", "all", "specific"] = "latest"
    latest: int = Field(1, ge=1)
    versions: list[int] = Field(default_factory=list)
    labels: dict[str, int] = Field(default_factory=dict)
    runtime: RuntimeName | None = None
    onnx_providers: list[str] | None = None
    max_batch_size: int | None = Field(None, ge=1)
    max_wait_ms: float | None = Field(None, ge=0)
    max_queue_rows: int | None = Field(None, ge=1)

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve out of ``available`` (sorted ascending)."""
        ordered = sorted(available)
        if self.policy == "all":
            return ordered
        if self.policy == "specific":
            return [v for v in ordered if v in set(self.versions)]
        return ordered[-self.latest :]


class RepositoryConfig(BaseModel):
    """The whole ``serving.yaml``."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelPolicy] = Field(default_factory=dict)

    def policy(self, name: str) -> ModelPolicy:
        return self.models.get(name, ModelPolicy())


class ConfigError(ValueError):
    """``serving.yaml`` exists but cannot be used."""


@dataclass(frozen=True)
class Snapshot:
    """What the repository holds at one moment: model name -> version -> directory."""

    root: Path
    versions: dict[str, dict[int, Path]]
    config: RepositoryConfig

    def selected(self) -> dict[str, dict[int, Path]]:
        """Only the versions each model's policy serves."""
        chosen: dict[str, dict[int, Path]] = {}
        for name, found in self.versions.items():
            keep = self.config.policy(name).select(list(found))
            chosen[name] = {v: found[v] for v in keep}
        return chosen


def load_config(root: Path) -> RepositoryConfig:
    """Parse ``serving.yaml``; a missing file means defaults, a broken one raises :class:`ConfigError`."""
    path = root / CONFIG_FILE
    if not path.exists():
        return RepositoryConfig()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return RepositoryConfig.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def scan(root: Path, config: RepositoryConfig | None = None) -> Snapshot:
    """List every complete model version under ``root`` (no artifact is opened here)."""
    versions: dict[str, dict[int, Path]] = {}
    if root.is_dir():
        for model_dir in sorted(root.iterdir()):
            if model_dir.name.startswith(".") or not model_dir.is_dir():
                continue
            found = {
                int(child.name): child
                for child in model_dir.iterdir()
                if child.is_dir() and child.name.isdigit() and int(child.name) > 0
                if (child / "metadata.json").is_file()
            }
            if found:
                versions[model_dir.name] = found
    return Snapshot(root=root, versions=versions, config=config or load_config(root))
