"""Fixtures for the training tests: one quick-trained repository shared by the export tests."""

from __future__ import annotations

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


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``keras.datasets.cifar10.load_data`` fail as it does without internet.

    A mock of the network only: tests never reach outside the machine (no probe, no 170 MB download);
    everything after the failed download is the real pipeline.
    """
    import keras

    def no_network(*_: Any, **__: Any) -> Any:
        raise Exception(  # what keras.utils.get_file raises offline
            "URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: None -- "
            "[Errno -3] Temporary failure in name resolution"
        )

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", no_network)


def read_metadata(version_dir: Path) -> dict[str, Any]:
    import json

    return json.loads((version_dir / "metadata.json").read_text())
