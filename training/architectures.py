"""Model builders: the tutorial's architectures, plus the pre-/post-processing that lets clients send raw values.

Each builder returns an *uncompiled* functional ``keras.Model`` whose input carries an explicit name
(``x``, ``features``, ``pixels``, ``sequence``, ``image``). Scaling layers (Rescaling, Normalization)
sit inside the model so every exported format accepts raw inputs; they have no trainable weights
and do not change the tutorial's layer stack.
"""

from __future__ import annotations

import keras
import numpy as np

from training.data import Dataset

INPUT_NAMES = {"linear": "x", "mlp": "features", "cnn": "pixels", "rnn": "sequence", "cifar10": "image"}


def build_linear() -> keras.Model:
    """Tutorial "Hello, Neural Network": ``Dense(1, activation='linear')`` on one feature."""
    inputs = keras.Input(shape=(1,), name=INPUT_NAMES["linear"])
    outputs = keras.layers.Dense(1, activation="linear", name="y")(inputs)
    return keras.Model(inputs, outputs, name="linear")


def build_mlp(features: np.ndarray, activation: str = "relu") -> keras.Model:
    """Tutorial MLP 10→64→32→1 (hidden ``activation``, sigmoid out) behind a Normalization adapted on ``features``."""
    inputs = keras.Input(shape=(features.shape[1],), name=INPUT_NAMES["mlp"])
    norm = keras.layers.Normalization(axis=-1, name="standardize")
    norm.adapt(features)
    x = norm(inputs)
    x = keras.layers.Dense(64, activation=activation, name="hidden_1")(x)
    x = keras.layers.Dense(32, activation=activation, name="hidden_2")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(inputs, outputs, name="mlp")


def build_cnn(activation: str = "relu") -> keras.Model:
    """Tutorial CNN: Conv2D(32, 3×3) → MaxPool(2) → Flatten → Dense(128) → Dense(10, softmax).

    Input is raw pixels 0–255 ``[N, 28, 28, 1]``; ``Rescaling(1/255)`` is the first layer.
    """
    inputs = keras.Input(shape=(28, 28, 1), name=INPUT_NAMES["cnn"])
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale_pixels")(inputs)
    x = keras.layers.Conv2D(32, kernel_size=(3, 3), activation=activation, name="conv")(x)
    x = keras.layers.MaxPooling2D(pool_size=(2, 2), name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation=activation, name="dense")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn")


def build_rnn(mean: float, std: float, window: int = 10, unroll: bool = False) -> keras.Model:
    """Tutorial RNN: SimpleRNN(50, tanh) → Dense(1), between input standardisation and output de-scaling.

    Clients send raw values ``[N, window, 1]`` and get the next value in raw units ``[N, 1]``.
    """
    inputs = keras.Input(shape=(window, 1), name=INPUT_NAMES["rnn"])
    x = keras.layers.Normalization(axis=None, mean=mean, variance=std**2, name="standardize")(inputs)
    x = keras.layers.SimpleRNN(50, activation="tanh", unroll=unroll, name="rnn")(x)
    x = keras.layers.Dense(1, activation="linear", name="next_scaled")(x)
    outputs = keras.layers.Rescaling(scale=std, offset=mean, name="to_raw_units")(x)
    return keras.Model(inputs, outputs, name="rnn")


def build_cifar10(activation: str = "relu") -> keras.Model:
    """The tutorial's exercise: a small CNN for 32×32×3 images, 10 classes (raw 0–255 input)."""
    inputs = keras.Input(shape=(32, 32, 3), name=INPUT_NAMES["cifar10"])
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale_pixels")(inputs)
    for i, filters in enumerate((32, 64)):
        x = keras.layers.Conv2D(filters, (3, 3), activation=activation, name=f"conv_{i + 1}")(x)
        x = keras.layers.MaxPooling2D((2, 2), name=f"pool_{i + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation=activation, name="dense")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cifar10")


def build(name: str, data: Dataset, activation: str = "relu") -> keras.Model:
    """The builder for model ``name``, given its training data (for adapted scaling layers)."""
    if name == "linear":
        return build_linear()
    if name == "mlp":
        return build_mlp(data.x_train, activation)
    if name == "cnn":
        return build_cnn(activation)
    if name == "rnn":
        series = data.x_train[:, :, 0]
        return build_rnn(float(series.mean()), float(series.std()), window=data.x_train.shape[1])
    if name == "cifar10":
        return build_cifar10(activation)
    raise KeyError(name)
