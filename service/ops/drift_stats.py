"""The drift statistics, one definition for the exporter and the server.

At export :func:`build_reference` (called by :mod:`training.reference`) records how the training rows fall
into the bins of each reference group (``metadata.json`` ``reference``, :class:`service.schema.Reference`);
:mod:`service.ops.drift` bins the served rows with the same functions and compares the two with the
population stability index (:func:`psi`). Pure NumPy, no state.

Statistics (``inputs``: the model's one input, ``outputs``: its one output, batch first):

- ``input_feature``: value ``index`` of each flattened input row (one value per row);
- ``pixel_intensity``: every value of each input row (an image's pixels: one histogram per image);
- ``ink_mass``: the mean of each input row (an image's mean pixel intensity);
- ``predicted_class``: the class each row is given: argmax of the output, or ``output > 0.5`` for a
  single-sigmoid binary classifier (bin = class number, no edges);
- ``output_value``: every value of each output row (a regressor's prediction).

Bins: ``edges`` are the inner cut points, ascending; bin ``i`` holds values ``edges[i-1] <= v <
edges[i]``, the first and last bins are open-ended, so every value lands in one of ``len(edges) + 1``
bins.
"""

from __future__ import annotations

import math

import numpy as np

from service.schema import DriftStatistic, Reference, ReferenceGroup

REFERENCE_BINS = 10
"""Quantile bins per feature, ink mass and regressor prediction (fewer where values repeat)."""
INTENSITY_BINS = 16
"""Equal-width pixel-intensity bins over the training range."""
MAX_FEATURES = 32
"""Input rows wider than this (and not images) get no per-feature groups: label cardinality stays bounded."""
EPSILON = 1e-4
"""Floor for a bin's proportion in :func:`psi` (expected and observed): an empty bin counts as 0.01 %,
so its log term stays finite; with it one 10 % bin left empty adds 0.1 * ln(0.1 / 1e-4) = 0.69."""
STABLE = 0.1
"""PSI rule of thumb: below 0.1 the distributions match (stable)."""
DRIFT = 0.25
"""PSI rule of thumb: 0.1-0.25 moderate shift, above 0.25 drift (the alert's threshold)."""


def predicted_class(outputs: np.ndarray) -> np.ndarray:
    """The class of each row: argmax over the flattened output, ``> 0.5`` for a one-column output."""
    scores = outputs.reshape(len(outputs), -1)
    if scores.shape[1] == 1:
        return (scores[:, 0] > 0.5).astype(np.intp)
    return np.argmax(scores, axis=1)


def statistic_values(
    statistic: str, inputs: np.ndarray, outputs: np.ndarray, index: int | None = None
) -> np.ndarray:
    """The values of ``statistic`` as ``[rows, values per row]``."""
    rows = len(inputs)
    if statistic == "input_feature":
        assert index is not None, "input_feature needs an index"
        return inputs.reshape(rows, -1)[:, index : index + 1]
    if statistic == "pixel_intensity":
        return inputs.reshape(rows, -1)
    if statistic == "ink_mass":
        return inputs.reshape(rows, -1).mean(axis=1, dtype=np.float64, keepdims=True)
    if statistic == "predicted_class":
        return predicted_class(outputs)[:, None]
    if statistic == "output_value":
        return outputs.reshape(len(outputs), -1)
    raise ValueError(f"unknown drift statistic {statistic!r}")


def row_histograms(
    values: np.ndarray, edges: np.ndarray | list[float], bins: int, categorical: bool
) -> np.ndarray:
    """``[rows, bins]`` counts: how many of each row's values fall into each bin (the bin of a
    categorical value is the value itself; values outside ``0..bins-1`` are not counted).

    One comparison pass per edge (``count(v >= edge)``, differenced into bins): for the few edges of a
    reference group this is several times faster than ``np.searchsorted`` + ``np.bincount`` on image rows.
    Edges are compared in the values' precision (Python floats against float32 pixels).
    """
    rows, width = values.shape
    if categorical:
        return np.stack([np.count_nonzero(values == c, axis=1) for c in range(bins)], axis=1)
    at_least = [np.count_nonzero(values >= float(edge), axis=1) for edge in edges]
    counts = np.stack([np.full(rows, width), *at_least, np.zeros(rows, np.intp)], axis=1)
    return counts[:, :-1] - counts[:, 1:]


def group_histograms(group: ReferenceGroup, inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """:func:`row_histograms` of one reference group's statistic on a batch."""
    values = statistic_values(group.statistic, inputs, outputs, group.index)
    return row_histograms(values, group.edges, len(group.proportions), group.statistic == "predicted_class")


def psi(expected: np.ndarray | list[float], observed: np.ndarray) -> float:
    """Population stability index of observed bin ``counts`` against ``expected`` proportions:
    ``sum((o - e) * ln(o / e))`` over the bins, each proportion floored at :data:`EPSILON`
    (NaN when nothing was observed)."""
    total = float(np.sum(observed))
    if total <= 0:
        return math.nan
    o = np.maximum(np.asarray(observed, np.float64) / total, EPSILON)
    e = np.maximum(np.asarray(expected, np.float64), EPSILON)
    return float(np.sum((o - e) * np.log(o / e)))


def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """Inner cut points at the ``1/bins .. (bins-1)/bins`` quantiles, each a value that occurs (6
    significant digits, duplicates merged, so a feature with few distinct values gets fewer bins)."""
    cuts = np.quantile(np.asarray(values, np.float64).ravel(), np.arange(1, bins) / bins, method="lower")
    return sorted({float(f"{c:.6g}") for c in cuts})


def even_edges(low: float, high: float, bins: int) -> list[float]:
    """Inner cut points of ``bins`` equal-width bins over ``[low, high]`` (one cut when ``low == high``)."""
    if not high > low:
        return [float(f"{low:.6g}")]
    return sorted({float(f"{c:.6g}") for c in np.linspace(low, high, bins + 1)[1:-1]})


def proportions(histograms: np.ndarray) -> list[float]:
    """The share of all counted values in each bin (6 decimals)."""
    totals = histograms.sum(axis=0).astype(np.float64)
    return [round(float(p), 6) for p in totals / max(totals.sum(), 1.0)]


# ----- building a reference (the exporter: training/reference.py) ---------------------------------
def _group(
    name: str,
    statistic: DriftStatistic,
    inputs: np.ndarray,
    outputs: np.ndarray,
    edges: list[float],
    bins: int,
    index: int | None = None,
) -> ReferenceGroup:
    values = statistic_values(statistic, inputs, outputs, index)
    counts = row_histograms(values, edges, bins, statistic == "predicted_class")
    return ReferenceGroup(
        name=name, statistic=statistic, index=index, edges=edges, proportions=proportions(counts)
    )


def _quantile_group(
    name: str, statistic: DriftStatistic, inputs: np.ndarray, outputs: np.ndarray, index: int | None = None
) -> ReferenceGroup:
    edges = quantile_edges(statistic_values(statistic, inputs, outputs, index), REFERENCE_BINS)
    return _group(name, statistic, inputs, outputs, edges, len(edges) + 1, index)


def build_reference(
    inputs: np.ndarray, outputs: np.ndarray, labels: list[str] | None, source: str
) -> Reference:
    """The reference of a model whose one input received ``inputs`` and answered ``outputs``.

    The groups follow from the input's shape and the labels:

    - image inputs (``[N, H, W, C]``: ``cnn``, ``cifar10``): ``intensity``, the pixel values in
      :data:`INTENSITY_BINS` equal-width bins over the range seen, and ``ink_mass``, each image's mean
      pixel intensity in :data:`REFERENCE_BINS` quantile bins;
    - other inputs (``mlp``, ``rnn``, ``linear``): ``f0``, ``f1``, ... one group per value of the flattened
      row in :data:`REFERENCE_BINS` quantile bins (fewer where a feature has few distinct values), none
      for rows wider than :data:`MAX_FEATURES`;
    - ``prediction``: the predicted-class distribution for classifiers (``labels`` set; one bin per
      label), else the output values in :data:`REFERENCE_BINS` quantile bins.
    """
    inputs, outputs = np.asarray(inputs), np.asarray(outputs)
    if len(inputs) != len(outputs) or len(inputs) == 0:
        raise ValueError(
            f"need the same, non-zero number of input and output rows, got {len(inputs)} and {len(outputs)}"
        )
    groups: list[ReferenceGroup] = []
    if inputs.ndim == 4:
        low, high = float(inputs.min()), float(inputs.max())
        edges = even_edges(low, high, INTENSITY_BINS)
        groups.append(_group("intensity", "pixel_intensity", inputs, outputs, edges, len(edges) + 1))
        groups.append(_quantile_group("ink_mass", "ink_mass", inputs, outputs))
    else:
        width = int(np.prod(inputs.shape[1:]))
        if width <= MAX_FEATURES:
            groups += [_quantile_group(f"f{i}", "input_feature", inputs, outputs, i) for i in range(width)]
    if labels:
        groups.append(_group("prediction", "predicted_class", inputs, outputs, [], len(labels)))
    else:
        groups.append(_quantile_group("prediction", "output_value", inputs, outputs))
    return Reference(rows=len(inputs), source=source, groups=groups)
