"""Reading the model repository: which model versions exist, and which of them the policy serves.

Layout: ``<repo>/<name>/<version>/metadata.json`` (plus artifacts). Directories whose name starts
with a dot (the exporter's staging area) or is not a :func:`valid_model_name`, and version directories
without ``metadata.json`` are ignored, so a half-written model is never seen. Which versions are served is :mod:`.config`'s business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from service.models.config import RepositoryConfig, load_config


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


_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def valid_model_name(name: str) -> bool:
    """A directory name that can be a model: ASCII letters, digits, ``_``, ``.`` and ``-``, not starting
    with ``.`` or ``-``. Anything else (non-ASCII, so no Unicode look-alikes or normalisation tricks,
    spaces, control characters) is ignored by :func:`scan`, so no request can ever name it."""
    return _MODEL_NAME.fullmatch(name) is not None


def _version_number(name: str) -> int | None:
    """A version directory's number: ASCII digits, > 0; anything else is not a version."""
    return int(name) if name.isascii() and name.isdigit() and int(name) > 0 else None


def scan(root: Path, config: RepositoryConfig | None = None) -> Snapshot:
    """List every complete model version under ``root`` (no artifact is opened here)."""
    versions: dict[str, dict[int, Path]] = {}
    if root.is_dir():
        for model_dir in sorted(root.iterdir()):
            if not valid_model_name(model_dir.name) or not model_dir.is_dir():
                continue
            found: dict[int, Path] = {}
            for child in model_dir.iterdir():
                number = _version_number(child.name)
                if number is not None and child.is_dir() and (child / "metadata.json").is_file():
                    found[number] = child
            if found:
                versions[model_dir.name] = found
    return Snapshot(root=root, versions=versions, config=config or load_config(root))
