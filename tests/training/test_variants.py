"""Precision variants at export: the int8 files of the quick-trained models, their metadata and the gate.

Every figure the exporter recorded is computed again here, independently (plain NumPy on ONNX Runtime's
outputs), on the same held-out split the training run evaluated.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from service.schema import ModelMetadata
from tests.training.conftest import read_metadata
from training.__main__ import main
from training.data import Dataset
from training.train import TrainConfig, load_data
from training.variants import GATES, build_variants, parse_variants

GATED = ("mlp", "cnn", "rnn")


def outputs(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def metric(name: str, out: np.ndarray, data: Dataset) -> float:
    """The gated metric, written out again: accuracy for the classifiers, MSE for the RNN."""
    if name == "cnn":
        return float(np.mean(out.argmax(axis=1) == data.y_test))
    if name == "mlp":
        return float(np.mean((out[:, 0] > 0.5) == (data.y_test[:, 0] > 0.5)))
    return float(np.mean((out - data.y_test) ** 2))


@pytest.mark.parametrize("name", GATED)
def test_the_recorded_int8_figures_are_what_the_files_give(quick_repo: Path, name: str) -> None:
    version = quick_repo / name / "1"
    meta = ModelMetadata.model_validate(read_metadata(version))
    variant = meta.variants["int8"]
    data = load_data(TrainConfig(model=name, quick=True))
    fp32_out = outputs(version / "model.onnx", data.x_test)
    assert variant.samples == len(data.x_test) and variant.metric == GATES[name].metric
    assert variant.fp32 == pytest.approx(metric(name, fp32_out, data), abs=1e-6)
    assert variant.fp32 == pytest.approx(meta.metrics[GATES[name].metric], abs=1e-6), "the card's split"
    assert variant.exported is (variant.loss is not None and variant.loss <= variant.gate + 1e-9)
    if not variant.exported:  # the gate kept it out: no file, a reason
        assert variant.reason and not (version / "model.int8.onnx").exists()
        return
    file = version / "model.int8.onnx"
    assert variant.file == "model.int8.onnx" and file.is_file()
    assert variant.sha256 == hashlib.sha256(file.read_bytes()).hexdigest() == meta.artifacts[variant.file]
    int8_out = outputs(file, data.x_test)
    assert variant.value == pytest.approx(metric(name, int8_out, data), abs=1e-6)
    deviation = float(np.max(np.abs(int8_out.astype(np.float64) - fp32_out)))
    assert variant.max_abs_deviation == pytest.approx(deviation, rel=1e-5)
    assert 0 < deviation < 0.1, "int8 changes the outputs, a little"


def test_the_gates_are_the_documented_ones(quick_repo: Path) -> None:
    gates = {n: read_metadata(quick_repo / n / "1")["variants"]["int8"] for n in GATED}
    assert (gates["cnn"]["gate"], gates["cnn"]["gate_unit"]) == (0.3, "points")
    assert gates["mlp"]["gate"] == pytest.approx(100 / 89) and gates["mlp"]["samples"] == 89
    assert (gates["rnn"]["gate"], gates["rnn"]["gate_unit"]) == (2.0, "percent")


def test_linear_records_why_it_has_no_variant(quick_repo: Path) -> None:
    variant = read_metadata(quick_repo / "linear" / "1")["variants"]["int8"]
    assert variant["exported"] is False and "single weight and bias" in variant["reason"]
    assert not (quick_repo / "linear" / "1" / "model.int8.onnx").exists()


@pytest.mark.parametrize("name", GATED)
def test_a_variant_over_its_gate_is_not_written(
    quick_repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """Calibrated on inputs in the wrong units (raw values / 255), the int8 model fails its gate."""
    shutil.copy(quick_repo / name / "1" / "model.onnx", tmp_path / "model.onnx")
    data = load_data(TrainConfig(model=name, quick=True))
    with caplog.at_level(logging.WARNING, logger="training.variants"):
        block = build_variants(tmp_path, name, data, ["int8"], calibration=data.x_train[:64] / 255.0)
    variant = block["int8"]
    assert variant["exported"] is False and variant["loss"] > variant["gate"]
    assert f"over the gate of {variant['gate']:.2f} {variant['gate_unit']}" in variant["reason"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"], "no variant file is left"
    assert f"{name}: int8 variant not exported: {variant['reason']}" in caplog.text


def test_variants_none_exports_none_and_bad_names_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--models", "mlp", "--quick", "--repo", str(tmp_path)]
    assert main([*argv, "--variants", "fp16"]) == 2
    assert "--variants: unknown variant 'fp16'; valid: int8" in capsys.readouterr().err
    assert not (tmp_path / "mlp").exists()
    assert main([*argv, "--variants", "none"]) == 0
    assert read_metadata(tmp_path / "mlp" / "1")["variants"] == {}
    assert not (tmp_path / "mlp" / "1" / "model.int8.onnx").exists()
    assert parse_variants("int8, int8") == ["int8"] and parse_variants("") == []


def test_metadata_without_variants_stays_valid_and_a_wrong_digest_does_not(quick_repo: Path) -> None:
    raw = read_metadata(quick_repo / "cnn" / "1")
    old = {k: v for k, v in raw.items() if k != "variants"}  # metadata.json written before variants
    assert ModelMetadata.model_validate(old).variants == {}
    raw["variants"]["int8"]["sha256"] = "0" * 64
    with pytest.raises(ValidationError, match=r"model\.int8\.onnx is not under artifacts with its sha256"):
        ModelMetadata.model_validate(raw)
    raw["variants"]["int8"] = {"exported": False}
    with pytest.raises(ValidationError, match="needs a reason"):
        ModelMetadata.model_validate(raw)


def test_int8_quantizes_the_dense_layers_and_leaves_the_convolution_float(quick_repo: Path) -> None:
    graph = onnx.load(quick_repo / "cnn" / "1" / "model.int8.onnx").graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    fed_by = {node.op_type: [made_by.get(i) for i in node.input] for node in graph.node}
    assert "DequantizeLinear" not in fed_by["Conv"], "the convolution's input and weights stay float"
    dense = [node for node in graph.node if node.op_type in {"MatMul", "Gemm"}]
    assert len(dense) == 2, "Dense(128) and the output layer"
    for node in dense:
        assert [made_by.get(i) for i in node.input[:2]] == ["DequantizeLinear"] * 2, node.name
