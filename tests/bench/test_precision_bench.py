"""``python -m bench precision`` in its shortest form on the quick-trained CNN: the shape of its results and
accuracies that are really the runtimes' on the 10k test set. No speed thresholds (speed is the report's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tests.server import ROOT


def test_precision_table_of_the_quick_cnn(trained_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "precision"
    cmd = [sys.executable, "-m", "bench", "precision", "--repo", str(trained_repo), "--rounds", "1",
           "--seconds", "0.05", "--no-wait-quiet", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    rows = {(r["runtime"], r["precision"]): r for r in doc["rows"]}
    assert set(rows) >= {("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "int8")}
    assert rows["onnx", "int8"]["provider"] == "CPUExecutionProvider int8"
    for row in rows.values():
        assert row["test_images"] == 10000 and set(row["images_per_s"]) == {"1", "64"}
        assert all(v > 0 for v in row["images_per_s"].values()) and 0 < row["cpu_share"] <= 1.5

    from training.data import load_mnist

    test = load_mnist(limit_train=1)
    session = ort.InferenceSession(
        str(trained_repo / "cnn" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    predicted = session.run(None, {"pixels": test.x_test})[0].argmax(axis=1)
    assert rows["onnx", "fp32"]["accuracy"] == float(np.mean(predicted == test.y_test))
    assert abs(rows["openvino", "fp32"]["accuracy"] - rows["onnx", "fp32"]["accuracy"]) <= 0.0005
    report = (out / "report.md").read_text()
    assert "| onnx | int8 |" in report and "| openvino | fp32 |" in report and doc["cpu"]["model"] in report
