"""Fixtures shared by the container and compose tests: podman and the images, built once per session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.deploy.podman import Podman, ensure_image, missing_tools

# Extra models of the images' test repository: copies of `linear` pinned to the other runtimes.
RUNTIME_MODELS = {"linear_keras": "keras", "linear_tf": "tensorflow"}


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    missing = missing_tools()
    if missing:
        pytest.fail(f"install the Debian packages {missing} to build the images (./run.sh test does)")
    return Podman(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="session")
def image(podman: Podman) -> str:
    """The serving image (no TensorFlow)."""
    return ensure_image(podman, "serving")


@pytest.fixture(scope="session")
def training_image(podman: Podman) -> str:
    return ensure_image(podman, "training")


@pytest.fixture(scope="session")
def readable_repo(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained repository, readable by the images' user (pytest's temporary folders are 0700), plus
    ``linear`` again as ``linear_keras`` and ``linear_tf`` with those runtimes set in ``serving.yaml``."""
    repo = tmp_path_factory.mktemp("image-repo") / "models"
    shutil.copytree(trained_repo, repo)
    for name in RUNTIME_MODELS:
        shutil.copytree(trained_repo / "linear", repo / name)
        meta = repo / name / "1" / "metadata.json"
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "name": name}))
    models = "".join(f"  {name}: {{runtime: {kind}}}\n" for name, kind in RUNTIME_MODELS.items())
    (repo / "serving.yaml").write_text("models:\n" + models)
    for path in [repo, *repo.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return repo
