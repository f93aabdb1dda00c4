"""What the exporter records about each model beyond its tensors: labels, input contract, example, parity inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data import CIFAR10_LABELS, Dataset

PARITY_SAMPLES = 256
MLP_LABELS = ["not_above_median", "above_median"]
CONTRACTS = {
    "linear": "x: float32 [N, 1], any real number; output: float32 [N, 1], the learned y = 2x.",
    "mlp": (
        "features: float32 [N, 10], the raw (unscaled) scikit-learn diabetes features in the order "
        "age, sex, bmi, bp, s1..s6 (e.g. age 59, sex 2, bmi 32.1); scaling happens inside the model. "
        "Output: float32 [N, 1] = probability of labels[1] ('above_median': disease progression above "
        "the training median); labels[0] is its complement."
    ),
    "cnn": (
        "pixels: float32 [N, 28, 28, 1], raw grey levels 0-255 (white digit on black, MNIST style); "
        "the model rescales by 1/255 itself. Output: float32 [N, 10] softmax over labels '0'..'9'."
    ),
    "rnn": (
        "sequence: float32 [N, 10, 1], ten consecutive monthly El Nino sea-surface temperatures in degC "
        "(raw, ~19-29), oldest first; scaling happens inside the model. Output: float32 [N, 1], the "
        "next month's temperature in degC."
    ),
    "cifar10": (
        "image: float32 [N, 32, 32, 3], raw RGB 0-255 (HWC); the model rescales by 1/255 itself. "
        "Output: float32 [N, 10] softmax over the CIFAR-10 class names in labels."
    ),
}


@dataclass
class Card:
    """Per-model facts for ``metadata.json`` and the inputs the parity check runs on."""

    labels: list[str] | None
    input_contract: str
    example: np.ndarray
    parity_inputs: np.ndarray
    parity_note: str


def _generated(data: Dataset, count: int, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    return rng.uniform(low, high, size=(count, *data.x_train.shape[1:])).astype(np.float32)


def model_card(name: str, data: Dataset, seed: int = 0) -> Card:
    """The :class:`Card` of model ``name`` trained on ``data``.

    Parity uses held-out test inputs (up to 512). Where the test split is smaller than
    :data:`PARITY_SAMPLES` (diabetes 89 rows, sunspots 60 windows) it is topped up with inputs drawn
    uniformly between the training minimum and maximum; the linear model (4 points) uses 256
    generated inputs in [-10, 10]. ``parity_note`` records which.
    """
    rng = np.random.default_rng(seed)
    held_out = data.x_test[:512]
    if name == "linear":
        inputs = _generated(data, PARITY_SAMPLES, rng, -10.0, 10.0)
        note = f"{PARITY_SAMPLES} generated inputs, uniform in [-10, 10] (the dataset has 4 points)"
        example = np.array([[5.0], [10.0]], np.float32)
    else:
        missing = max(0, PARITY_SAMPLES - len(held_out))
        if missing:
            low, high = data.x_train.min(axis=0), data.x_train.max(axis=0)
            extra = (low + (high - low) * rng.uniform(size=(missing, *low.shape))).astype(np.float32)
            inputs = np.concatenate([held_out, extra])
            note = f"{len(held_out)} held-out test inputs + {missing} generated within the training range"
        else:
            inputs = held_out
            note = f"{len(held_out)} held-out test inputs"
        example = data.x_test[: 1 if name in {"cnn", "cifar10"} else 2]
    labels: list[str] | None = None
    if name == "mlp":
        labels = list(MLP_LABELS)
    elif name == "cnn":
        labels = [str(d) for d in range(10)]
    elif name == "cifar10":
        labels = list(CIFAR10_LABELS)
    return Card(labels, CONTRACTS[name], example.astype(np.float32), inputs.astype(np.float32), note)
