"""The README's first command, ``./run.sh``, as a user runs it: it trains the default models missing from the
repository and then serves every model on the port (here a free loopback port, through ``SERVING_PORT``).

The repository starts with the quick-trained mlp, cnn and rnn; ``linear`` is missing, so the main job must
train it in full (seconds), export it as version 1 and serve it next to the others, without touching the
three that were there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import requests

from tests.server import ROOT, Server

pytestmark = pytest.mark.e2e


class MainJob(Server):
    """The server that ``./run.sh`` (no arguments) starts, with this helper's port and repository."""

    def command(self) -> list[str]:
        return ["bash", str(ROOT / "run.sh")]


def test_run_sh_trains_what_is_missing_then_serves_everything(trained_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    present = ("mlp", "cnn", "rnn")
    for name in present:
        shutil.copytree(trained_repo / name, repo / name)
    before = {name: (repo / name / "1" / "metadata.json").read_bytes() for name in present}
    with MainJob(repo, tmp_path / "run.log", workers=1, start_timeout=240) as server:
        models = requests.get(server.url + "/v1/models", timeout=10).json()
        served = {m["name"] for m in models["models"]}
        assert served == {"linear", *present}, models
        answer = requests.post(
            server.url + "/v1/predict", json={"model": "linear", "inputs": [[5.0]]}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == 1
        # the tutorial's hello net learns y = 2x: its full training gets close (the README shows 9.99978)
        assert answer.json()["outputs"]["output_0"][0][0] == pytest.approx(10.0, abs=0.05)
    meta = json.loads((repo / "linear" / "1" / "metadata.json").read_text())
    assert meta["parity"]["passed"] and meta["parity"]["onnx_vs_saved_model"] <= meta["parity"]["tolerance"]
    assert not (repo / "linear" / "2").exists()
    assert {name: (repo / name / "1" / "metadata.json").read_bytes() for name in present} == before
    log = server.log_path.read_text(errors="replace")
    for name in present:
        assert f"{name}: a version exists in {repo}, skipped (--missing-only)" in log
    assert "linear         1  f(5)=" in log  # the training table's row of the model it trained
