"""Fixtures for the training tests: one quick-trained repository shared by the export tests."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

import training  # noqa: F401  (imports Keras on the TensorFlow backend before anything else does)
from training.pipeline import run_training
from training.train import DEFAULT_MODELS, TrainConfig


@pytest.fixture(scope="session")
def quick_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding version 1 of linear, mlp, cnn and rnn, trained with ``--quick``."""
    repo = tmp_path_factory.mktemp("repo") / "models"
    rows = run_training(list(DEFAULT_MODELS), repo, TrainConfig(model="linear", quick=True, progress=False))
    assert [r.version for r in rows] == [1, 1, 1, 1]
    return repo


@pytest.fixture(scope="session")
def offline() -> None:
    """Skip when this machine can reach the CIFAR-10 download server (the test would download 170 MB)."""
    try:
        with socket.create_connection(("www.cs.toronto.edu", 443), timeout=3):
            pytest.skip("the CIFAR-10 server is reachable; the offline behaviour cannot be checked here")
    except OSError:
        return


def read_metadata(version_dir: Path) -> dict[str, Any]:
    import json

    return json.loads((version_dir / "metadata.json").read_text())
