"""Reference statistics at export: what the training pipeline writes into metadata.json, checked against
the training data and the exported ONNX model."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort
import pytest

from service.ops.drift_stats import group_histograms, proportions
from service.schema import ModelMetadata
from training.reference import REFERENCE_ROWS, reference_statistics
from training.train import TrainConfig, load_data

GROUPS = {
    "linear": (["f0", "prediction"], "output_value"),
    "mlp": ([f"f{i}" for i in range(10)] + ["prediction"], "predicted_class"),
    "cnn": (["intensity", "ink_mass", "prediction"], "predicted_class"),
    "rnn": ([f"f{i}" for i in range(10)] + ["prediction"], "output_value"),
}


def metadata(repo: Path, name: str) -> ModelMetadata:
    return ModelMetadata.model_validate_json((repo / name / "1" / "metadata.json").read_text())


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_every_exported_model_has_its_reference(trained_repo: Path, name: str) -> None:
    meta = metadata(trained_repo, name)
    reference = meta.reference
    assert reference is not None
    names, prediction = GROUPS[name]
    assert [g.name for g in reference.groups] == names
    assert reference.groups[-1].statistic == prediction
    train_size = meta.dataset["train_size"]
    assert reference.rows == min(train_size, REFERENCE_ROWS)
    assert reference.source == f"all {train_size} training inputs"
    if meta.labels:
        assert len(reference.groups[-1].proportions) == len(meta.labels)
    for group in reference.groups:
        assert sum(group.proportions) == pytest.approx(1.0, abs=1e-5)


def test_the_cnn_reference_describes_its_training_images_and_predictions(trained_repo: Path) -> None:
    """Recomputed from the quick run's training images (the same rows) and the exported ONNX model."""
    reference = metadata(trained_repo, "cnn").reference
    assert reference is not None
    images = load_data(TrainConfig(model="cnn", quick=True)).x_train
    session = ort.InferenceSession(str(trained_repo / "cnn/1/model.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"pixels": images})[0]
    intensity, ink, prediction = reference.groups
    assert intensity.proportions == proportions(group_histograms(intensity, images, outputs))
    assert ink.proportions == proportions(group_histograms(ink, images, outputs))
    assert max(abs(p - 0.1) for p in ink.proportions) < 0.02  # training-quantile bins: deciles
    assert intensity.proportions[0] > 0.7  # MNIST: mostly black background
    classes = np.bincount(outputs.argmax(axis=1), minlength=10) / len(images)
    assert prediction.proportions == pytest.approx(classes.tolist(), abs=2e-3)  # ONNX vs Keras ties at most


def test_large_training_sets_are_sampled_reproducibly() -> None:
    inputs = np.random.default_rng(0).normal(size=(REFERENCE_ROWS + 2000, 3)).astype(np.float32)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    first = reference_statistics(model, inputs, None, seed=5)
    assert first["rows"] == REFERENCE_ROWS
    assert first["source"] == f"{REFERENCE_ROWS} of {len(inputs)} training inputs (seeded sample, seed 5)"
    assert reference_statistics(model, inputs, None, seed=5) == first
    assert reference_statistics(model, inputs, None, seed=6)["groups"] != first["groups"]
