"""The playground's MNIST preprocessing (``mnistStyle`` in service/ui/playground.js), in NumPy.

The same steps with the same constants, so tests can check the algorithm against real MNIST digits here
and check that the browser's JavaScript computes the same numbers: the ink's bounding box (pixels above
5 % of the brightest) is area-resampled so that its longer side is 20 pixels (aspect kept), placed in a
28×28 field with its centre of mass at (14, 14) (whole-pixel shift), and scaled so the brightest pixel
is 255; values are rounded to integers. Rounding is ``floor(x + 0.5)``, as JavaScript's ``Math.round``.
"""

from __future__ import annotations

import numpy as np

SIZE, BOX, CENTRE, INK_THRESHOLD = 28, 20, 14, 0.05


def js_round(x: np.ndarray | float) -> np.ndarray:
    """JavaScript's ``Math.round``: halves go up (NumPy rounds them to even)."""
    return np.floor(np.asarray(x, np.float64) + 0.5)


def area_weights(in_size: int, out_size: int) -> np.ndarray:
    """``[out_size, in_size]``: the fraction of each target pixel's footprint each source pixel covers."""
    scale = in_size / out_size
    weights = np.zeros((out_size, in_size))
    for o in range(out_size):
        a, b = o * scale, (o + 1) * scale
        for j in range(int(np.floor(a)), min(in_size - 1, int(np.ceil(b)) - 1) + 1):
            weights[o, j] = (min(j + 1, b) - max(j, a)) / scale
    return weights


def mnist_style(grey: np.ndarray) -> np.ndarray | None:
    """``grey`` ``[H, W]`` (white ink on black, 0–255) → ``[28, 28]`` float64 integers 0–255; None if blank."""
    grey = np.asarray(grey, np.float64)
    peak = grey.max()
    if not peak > 0:
        return None
    ys, xs = np.nonzero(grey > peak * INK_THRESHOLD)
    crop = grey[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    bh, bw = crop.shape
    scale = BOX / max(bw, bh)
    tw, th = max(1, int(js_round(bw * scale))), max(1, int(js_round(bh * scale)))
    patch = area_weights(bh, th) @ crop @ area_weights(bw, tw).T
    mass = patch.sum()
    cy = float((patch.sum(axis=1) * np.arange(th)).sum() / mass)
    cx = float((patch.sum(axis=0) * np.arange(tw)).sum() / mass)
    oy, ox = int(js_round(CENTRE - cy)), int(js_round(CENTRE - cx))
    out = np.zeros((SIZE, SIZE))
    for y in range(th):
        for x in range(tw):
            if 0 <= y + oy < SIZE and 0 <= x + ox < SIZE:
                out[y + oy, x + ox] = patch[y, x]
    top = out.max()
    return js_round(out * 255 / top) if top > 0 else out


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) centre of mass of a 2-D image."""
    image = np.asarray(image, np.float64)
    mass = image.sum()
    rows, cols = np.indices(image.shape)
    return float((rows * image).sum() / mass), float((cols * image).sum() / mass)


def ink_box(image: np.ndarray, threshold: float = INK_THRESHOLD) -> tuple[int, int]:
    """(height, width) of the bounding box of the pixels above ``threshold`` × the brightest."""
    ys, xs = np.nonzero(image > image.max() * threshold)
    return int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
