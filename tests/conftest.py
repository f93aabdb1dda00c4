"""Shared fixtures: a repository of really trained (quick mode) models, built once per test session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAINED_MODELS = ("linear", "mlp", "cnn", "rnn")


@pytest.fixture(scope="session")
def trained_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m training train --quick`` of every default model into a temporary repository."""
    repo = tmp_path_factory.mktemp("trained-repo")
    cmd = [sys.executable, "-m", "training", "train", "--quick", "--seed", "0", "--repo", str(repo),
           "--models", ",".join(TRAINED_MODELS)]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in TRAINED_MODELS:
        assert (repo / name / "1" / "metadata.json").is_file(), f"{name} was not exported"
    return repo
