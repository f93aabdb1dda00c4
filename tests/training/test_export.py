"""Export: artifacts, metadata contract, parity, atomic versioning."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from service.schema import ModelMetadata
from tests.training.conftest import read_metadata
from training import export as export_mod
from training.cards import model_card
from training.data import Dataset
from training.export import ExportError, ParityError, check_parity, export
from training.train import TrainConfig, load_data, train

Trained = tuple[Any, Dataset, dict[str, float]]  # (keras.Model, data, metrics)

EXPECTED_INPUTS = {"linear": "x", "mlp": "features", "cnn": "pixels", "rnn": "sequence"}


# ---- parity, as a pure function ------------------------------------------------------------------


def test_check_parity_returns_the_max_difference() -> None:
    ref = np.linspace(0, 1, 600, dtype=np.float32).reshape(300, 2)
    assert check_parity(ref, ref.copy()) == 0.0
    nudged = ref.copy()
    nudged[7, 1] += 4e-6
    assert check_parity(ref, nudged) == pytest.approx(4e-6, rel=1e-2)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda a: a + 1e-3,  # every output off
        lambda a: np.where(np.arange(a.size).reshape(a.shape) == 5, a + 2e-5, a),  # one output off
        lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, np.nan, a),  # NaN
        lambda a: a[:-1],  # a row missing
    ],
    ids=["all", "one", "nan", "shape"],
)
def test_check_parity_fails_on_corrupted_outputs(corrupt: Callable[[np.ndarray], np.ndarray]) -> None:
    ref = np.random.default_rng(0).uniform(size=(256, 10)).astype(np.float32)
    with pytest.raises(ParityError):
        check_parity(ref, corrupt(ref), tolerance=1e-5, what="test")


# ---- the four quick-trained models ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPECTED_INPUTS))
def test_export_writes_every_artifact_with_valid_metadata(quick_repo: Path, name: str) -> None:
    version_dir = quick_repo / name / "1"
    for rel in ("saved_model/saved_model.pb", "model.onnx", "model.keras", "metadata.json"):
        assert (version_dir / rel).is_file(), rel
    raw = read_metadata(version_dir)
    meta = ModelMetadata.model_validate(raw)
    assert meta.name == name and meta.version == 1 and meta.created.endswith("Z")

    files = {p.relative_to(version_dir).as_posix() for p in version_dir.rglob("*") if p.is_file()}
    assert set(meta.artifacts) == files - {"metadata.json"}, "every file (saved_model/ included) is recorded"
    assert any(k.startswith("saved_model/variables/") for k in meta.artifacts)
    for rel, digest in meta.artifacts.items():
        assert hashlib.sha256((version_dir / rel).read_bytes()).hexdigest() == digest, rel

    assert meta.parity.passed and meta.parity.samples >= 256
    assert max(meta.parity.onnx_vs_saved_model, meta.parity.onnx_vs_keras) <= 1e-5
    assert raw["onnx_opset"] >= 13 and raw["seed"] == 0 and raw["quick"] is True
    assert meta.inputs[0].name == EXPECTED_INPUTS[name]


@pytest.mark.parametrize("name", list(EXPECTED_INPUTS))
def test_recorded_names_are_the_real_onnx_and_signature_names(quick_repo: Path, name: str) -> None:
    import tensorflow as tf

    version_dir = quick_repo / name / "1"
    meta = ModelMetadata.model_validate(read_metadata(version_dir))
    session = ort.InferenceSession(str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [t.name for t in meta.inputs]
    assert [o.name for o in session.get_outputs()] == [t.name for t in meta.outputs]

    example = {k: np.asarray(v, np.float32) for k, v in meta.example.items()}
    assert 1 <= len(next(iter(example.values()))) <= 2
    (onnx_out,) = session.run([o.name for o in meta.outputs], example)
    assert list(onnx_out.shape[1:]) == meta.outputs[0].shape[1:]

    mapping = (meta.model_extra or {}).get("saved_model_signature") or {"inputs": {}, "outputs": {}}
    signature = tf.saved_model.load(str(version_dir / "saved_model")).signatures["serving_default"]
    feed = {mapping["inputs"].get(k, k): tf.constant(v) for k, v in example.items()}
    tf_out = signature(**feed)[mapping["outputs"].get(meta.outputs[0].name, meta.outputs[0].name)].numpy()
    assert np.max(np.abs(tf_out - onnx_out)) <= 1e-5


def test_no_staging_directory_is_left(quick_repo: Path) -> None:
    assert not [p for p in quick_repo.iterdir() if p.name.startswith(".")]


# ---- atomic versioning ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linear_model() -> Trained:
    config = TrainConfig("linear", quick=True, progress=False)
    data = load_data(config)
    metrics, model = train(config, data)
    return model, data, metrics


def _export(linear_model: Trained, repo: Path, **kwargs: Any) -> dict[str, Any]:
    model, data, metrics = linear_model
    card = model_card("linear", data)
    return export(
        model,
        repo,
        name="linear",
        card=card,
        metrics=metrics,
        dataset=data.describe(),
        training_seconds=1.0,
        **kwargs,
    )


def test_two_exports_give_versions_1_and_2(tmp_path: Path, linear_model: Trained) -> None:
    first = _export(linear_model, tmp_path)
    onnx_1 = (tmp_path / "linear" / "1" / "model.onnx").read_bytes()
    second = _export(linear_model, tmp_path)
    assert (first["version"], second["version"]) == (1, 2)
    assert read_metadata(tmp_path / "linear" / "2")["version"] == 2
    assert (tmp_path / "linear" / "1" / "model.onnx").read_bytes() == onnx_1, "version 1 is never rewritten"


def test_a_taken_version_number_moves_on_to_the_next(
    tmp_path: Path, linear_model: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    _export(linear_model, tmp_path)
    before = read_metadata(tmp_path / "linear" / "1")
    monkeypatch.setattr(export_mod, "existing_versions", lambda _dir: [])  # a racing exporter's stale view
    meta = _export(linear_model, tmp_path)
    assert meta["version"] == 2 and read_metadata(tmp_path / "linear" / "2")["version"] == 2
    assert read_metadata(tmp_path / "linear" / "1") == before


def _crash_in_conversion(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("simulated crash while converting")


@pytest.mark.parametrize("stage", ["mid-export", "at-rename"])
def test_a_crash_leaves_no_version_and_no_staging(
    tmp_path: Path, linear_model: Trained, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    if stage == "mid-export":
        monkeypatch.setattr(export_mod, "convert_to_onnx", _crash_in_conversion)
    else:  # everything written, metadata.json included; the final rename fails
        real_rename = os.rename

        def failing_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
            if Path(src).name.startswith(".staging-"):
                assert (Path(src) / "metadata.json").is_file()
                raise OSError(errno.EIO, "simulated I/O error at rename")
            real_rename(src, dst)

        monkeypatch.setattr(export_mod.os, "rename", failing_rename)
    with pytest.raises((RuntimeError, OSError), match="simulated"):
        _export(linear_model, tmp_path)
    leftovers = list(tmp_path.rglob("*"))
    assert not [p for p in leftovers if p.name.startswith(".staging")], leftovers
    assert not [p for p in leftovers if p.name == "metadata.json" or p.name.isdigit()], leftovers


def test_export_refuses_formats_that_disagree(
    tmp_path: Path, linear_model: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A converter that shifts every ONNX weight by 1e-3 must be caught by the parity check."""
    import onnx
    from onnx import numpy_helper

    real_convert = export_mod.convert_to_onnx

    def convert_then_corrupt(saved_model: Path, output: Path, opset: int = export_mod.ONNX_OPSET) -> None:
        real_convert(saved_model, output, opset)
        graph = onnx.load(str(output))
        for init in graph.graph.initializer:
            values = numpy_helper.to_array(init)
            if values.dtype == np.float32:
                init.CopyFrom(numpy_helper.from_array(values + np.float32(1e-3), init.name))
        onnx.save(graph, str(output))

    monkeypatch.setattr(export_mod, "convert_to_onnx", convert_then_corrupt)
    with pytest.raises(
        ParityError, match=r"ONNX vs SavedModel: max abs difference .* exceeds tolerance 1e-05"
    ):
        _export(linear_model, tmp_path)
    assert not list(tmp_path.rglob("metadata.json"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]


def test_unwritable_repository_is_a_clear_error(tmp_path: Path, linear_model: Trained) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ExportError, match="not writable"):
        _export(linear_model, blocker / "models")
