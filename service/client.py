"""A small Python client for the native API (standard library only) and input helpers for the CLI."""

from __future__ import annotations

import csv
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np


class ServingError(RuntimeError):
    """The server answered with an error; ``status`` and ``body`` carry its answer."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('error', body)}")
        self.status = status
        self.body = body


class Client:
    """``Client("http://127.0.0.1:3000").predict("cnn", images)`` -> ``{"outputs": ...}``."""

    def __init__(self, url: str = "http://127.0.0.1:3000", timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> dict[str, Any]:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read())
            except ValueError:
                body = {"error": exc.reason}
            raise ServingError(exc.code, body) from None

    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/models")["models"]

    def model(self, name: str) -> dict[str, Any]:
        for m in self.models():
            if m["name"] == name:
                return m
        raise ServingError(404, {"error": f"model {name!r} not found"})

    def predict(
        self,
        model: str,
        inputs: np.ndarray | list[Any] | dict[str, Any],
        version: int | None = None,
        label: str | None = None,
    ) -> dict[str, Any]:
        """Predict; ``inputs`` is one batch (array or nested list) or ``{input name: batch}``."""

        def plain(v: Any) -> Any:
            return v.tolist() if isinstance(v, np.ndarray) else v

        body: dict[str, Any] = {"model": model}
        body["inputs"] = (
            {k: plain(v) for k, v in inputs.items()} if isinstance(inputs, dict) else plain(inputs)
        )
        if version is not None:
            body["version"] = version
        if label is not None:
            body["label"] = label
        return self._call("POST", "/v1/predict", body)


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
