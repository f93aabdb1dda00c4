"""Turn files into request batches for the CLI: an image for an image model, CSV rows for a tabular one."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def image_batch(path: Path, shape: list[int], invert: bool | None = None) -> np.ndarray:
    """A PNG/JPEG as a batch of one for an image input ``shape`` ([-1, H, W, C]); raw 0-255 values.

    Greyscale (C=1) or RGB (C=3) and resized to H×W. MNIST digits are light on dark: with
    ``invert=None`` a mostly light picture (dark digit on white paper) is inverted automatically.
    """
    from PIL import Image

    if len(shape) != 4:
        raise ValueError(f"model input shape {shape} is not an image batch [N, H, W, C]")
    _, height, width, channels = shape
    image = Image.open(path).convert("L" if channels == 1 else "RGB").resize((width, height))
    pixels = np.asarray(image, dtype=np.float32)
    if invert is None:
        invert = channels == 1 and float(pixels.mean()) > 127.0
    if invert:
        pixels = 255.0 - pixels
    return pixels.reshape(1, height, width, channels)


def csv_batch(path: Path, shape: list[int]) -> np.ndarray:
    """Numeric CSV rows (a header line is skipped) reshaped to the input's per-row shape."""
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]
    array = np.asarray([[float(x) for x in r] for r in rows], dtype=np.float32)
    return array.reshape([len(rows), *[d if d > 0 else -1 for d in shape[1:]]])


def _numeric(row: list[str]) -> bool:
    try:
        [float(x) for x in row]
    except ValueError:
        return False
    return True
