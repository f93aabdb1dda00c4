"""Serving a precision variant: per-model ``precision``, the int8 file, and every way a variant can be unusable.

Real quick-trained models (the session's ``trained_repo``, whose export writes ``model.int8.onnx``), run by
the real ONNX Runtime and OpenVINO in this process.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from pydantic import ValidationError

from service.models.config import ModelPolicy, RepositoryConfig
from service.models.version import warmup_batch
from service.runtimes.base import ArtifactError, variant_file
from service.runtimes.factory import create_runtime
from service.runtimes.onnx import OnnxRuntime
from service.schema import ModelMetadata
from service.settings import Settings

CPU = ["CPUExecutionProvider"]


def metadata(directory: Path) -> ModelMetadata:
    return ModelMetadata.model_validate_json((directory / "metadata.json").read_bytes())


def loaded(kind: str, directory: Path, precision: str) -> tuple[object, ModelMetadata]:
    meta = metadata(directory)
    runtime = create_runtime(kind, directory, meta, CPU, threads=1, precision=precision)
    runtime.load()
    return runtime, meta


@pytest.fixture
def cnn_copy(trained_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the quick CNN's version 1, for tests that damage it."""
    return Path(shutil.copytree(trained_repo / "cnn" / "1", tmp_path / "cnn" / "1"))


def test_int8_runs_the_variant_file_and_says_so(trained_repo: Path) -> None:
    directory = trained_repo / "cnn" / "1"
    runtime, meta = loaded("onnx", directory, "int8")
    assert runtime.provider == "CPUExecutionProvider int8" and runtime.precision == "int8"
    example = warmup_batch(meta)
    got = runtime.predict(example)["output_0"]
    plain = ort.InferenceSession(str(directory / "model.int8.onnx"), providers=CPU)
    assert np.array_equal(got, plain.run(None, example)[0]), "the int8 file, not model.onnx"
    fp32 = OnnxRuntime(directory, meta, CPU, threads=1)
    fp32.load()
    assert fp32.provider == "CPUExecutionProvider", "fp32 keeps the provider text it always had"
    deviation = float(np.max(np.abs(got - fp32.predict(example)["output_0"])))
    assert 0 < deviation <= meta.variants["int8"].max_abs_deviation, "the example is a held-out image"


def test_a_corrupt_variant_fails_its_checksum(cnn_copy: Path) -> None:
    (cnn_copy / "model.int8.onnx").write_bytes(b"not a model")
    with pytest.raises(
        ArtifactError, match=r"artifact corrupt: model\.int8\.onnx does not match its recorded sha256"
    ):
        loaded("onnx", cnn_copy, "int8")
    (cnn_copy / "model.int8.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"artifact missing: model\.int8\.onnx"):
        loaded("openvino", cnn_copy, "int8")


def test_metadata_without_variants_names_the_export_command(cnn_copy: Path) -> None:
    raw = json.loads((cnn_copy / "metadata.json").read_text())
    raw.pop("variants")
    raw["artifacts"].pop("model.int8.onnx")
    (cnn_copy / "metadata.json").write_text(json.dumps(raw))
    (cnn_copy / "model.int8.onnx").unlink()
    for kind in ("onnx", "openvino"):
        with pytest.raises(ArtifactError) as info:
            loaded(kind, cnn_copy, "int8")
        assert str(info.value) == (
            "model cnn version 1 has no int8 variant (metadata.json records none): export one with "
            "`python -m training train --models cnn --variants int8`, or serve it with precision fp32"
        )
    assert variant_file(metadata(cnn_copy), "fp32") == "model.onnx", "fp32 needs no variant"


def test_a_variant_the_exporter_left_out_says_why(trained_repo: Path) -> None:
    with pytest.raises(ArtifactError, match=r"the exporter left it out \(linear has no int8 variant"):
        loaded("onnx", trained_repo / "linear" / "1", "int8")


def test_onnx_runtime_refuses_bf16_and_the_other_runtimes_anything_but_fp32(trained_repo: Path) -> None:
    with pytest.raises(ArtifactError, match=r"runtime onnx has no bf16 precision .* runtime openvino"):
        loaded("onnx", trained_repo / "cnn" / "1", "bf16")
    for kind in ("tensorflow", "keras"):
        with pytest.raises(ArtifactError, match=f"runtime {kind} serves fp32 only; precision int8 needs"):
            loaded(kind, trained_repo / "cnn" / "1", "int8")


def test_openvino_missing_names_the_extra(trained_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sys.modules[name] = None`` makes the import fail exactly as on a machine without the package."""
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ArtifactError, match=r"pip install 'keras-serving\[openvino\]'"):
        loaded("openvino", trained_repo / "cnn" / "1", "fp32")


def test_precision_in_serving_yaml_falls_back_to_the_setting() -> None:
    config = RepositoryConfig.model_validate(
        yaml.safe_load("models:\n  cnn: {runtime: openvino, precision: int8}\n  mlp: {}\n")
    )
    assert config.policy("cnn").effective(Settings()).precision == "int8"
    assert config.policy("cnn").effective(Settings()).runtime == "openvino"
    assert config.policy("mlp").effective(Settings()).precision == "fp32"
    assert config.policy("mlp").effective(Settings(precision="bf16")).precision == "bf16"
    with pytest.raises(ValidationError, match="'fp32', 'int8' or 'bf16'"):
        ModelPolicy.model_validate({"precision": "fp16"})


def test_the_precision_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().precision == "fp32"
    monkeypatch.setenv("SERVING_PRECISION", "int8")
    assert Settings().precision == "int8"
    monkeypatch.setenv("SERVING_PRECISION", "int4")
    with pytest.raises(ValidationError, match="precision"):
        Settings()


def test_int8_sessions_keep_the_pool_in_float(trained_repo: Path, tmp_path: Path) -> None:
    """The quantize step stays in front of the dense layer, where the exporter put it.

    ONNX Runtime's QDQ propagation would move it up before the MaxPool (the graph a plain session
    builds, checked too), which then runs on uint8 without the blocked float layout: 5x slower here.
    """
    from service.runtimes.onnx import open_session

    def optimized(open_it: object) -> list[tuple[str, str | None]]:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        open_it(trained_repo / "cnn" / "1" / "model.int8.onnx", options)  # type: ignore[operator]
        graph = onnx.load(options.optimized_model_filepath).graph
        made_by = {out: node.op_type for node in graph.node for out in node.output}
        return [(node.op_type, made_by.get(node.input[0])) for node in graph.node]

    ours = optimized(open_session)
    assert ("MaxPool", "QuantizeLinear") not in ours and ("QuantizeLinear", "Reshape") in ours
    assert ("QGemm", "QuantizeLinear") in ours, "the dense layer still runs as int8"
    plain = optimized(lambda path, options: ort.InferenceSession(str(path), options, providers=CPU))
    assert ("MaxPool", "QuantizeLinear") in plain, "what the setting prevents"


@pytest.mark.parametrize("kind", ["onnx", "openvino"])
def test_an_int8_answer_does_not_depend_on_the_rest_of_its_batch(trained_repo: Path, kind: str) -> None:
    """Static scales: each row gets bit for bit the answer it gets alone, whoever shares its batch."""
    runtime, meta = loaded(kind, trained_repo / "cnn" / "1", "int8")
    name, out = meta.inputs[0].name, meta.outputs[0].name
    rows = np.random.default_rng(0).random((48, 28, 28, 1), dtype=np.float32)
    together = runtime.predict({name: rows})[out]
    alone = np.concatenate([runtime.predict({name: rows[i : i + 1]})[out] for i in range(len(rows))])
    others = runtime.predict({name: np.concatenate([rows[:8], rows[::-1][:8] * 0.5])})[out][:8]
    assert np.array_equal(together, alone) and np.array_equal(together[:8], others)
