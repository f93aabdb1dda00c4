"""Training: the tutorial's linear result, reproducibility, quick runs."""

from __future__ import annotations

import numpy as np
import pytest

from training.train import RECIPES, TrainConfig, load_data, train


def test_linear_learns_y_equals_2x_in_the_tutorials_500_epochs() -> None:
    config = TrainConfig("linear", progress=False)
    assert config.resolved_epochs == 500
    metrics, model = train(config)
    assert metrics["prediction_at_5"] == pytest.approx(10.0, abs=0.05)
    assert float(model.predict(np.array([[5.0]], np.float32), verbose=0)[0, 0]) == pytest.approx(
        10.0, abs=0.05
    )
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "Dense"]


def test_same_seed_gives_the_same_model() -> None:
    config = TrainConfig("mlp", quick=True, progress=False, seed=3)
    data = load_data(config)
    (m1, a), (m2, b) = train(config, data), train(config, data)
    assert m1["accuracy"] == m2["accuracy"] and m1["loss"] == m2["loss"]
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))
    other, _ = train(TrainConfig("mlp", quick=True, progress=False, seed=4), data)
    assert other["loss"] != m1["loss"]


def test_architectures_follow_the_tutorial() -> None:
    _, cnn = train(TrainConfig("cnn", quick=True, progress=False, epochs=1))
    kinds = [type(layer).__name__ for layer in cnn.layers]
    assert kinds == ["InputLayer", "Rescaling", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    assert cnn.get_layer("conv").filters == 32 and cnn.get_layer("dense").units == 128
    assert cnn.output_shape == (None, 10) and cnn.input_shape == (None, 28, 28, 1)

    _, rnn = train(TrainConfig("rnn", quick=True, progress=False))
    assert rnn.get_layer("rnn").units == 50 and rnn.input_shape == (None, 10, 1)
    assert RECIPES["linear"].quick_epochs == 500


def test_rnn_predicts_in_raw_units() -> None:
    config = TrainConfig("rnn", quick=True, progress=False)
    data = load_data(config)
    metrics, model = train(config, data)
    pred = model.predict(data.x_test, verbose=0)
    assert 15 < float(pred.mean()) < 32, "outputs are degrees Celsius, not standardised values"
    assert metrics["test_mse"] == pytest.approx(float(np.mean((pred - data.y_test) ** 2)), rel=1e-5)
