"""Reference statistics for drift detection, recorded at export into ``metadata.json`` ``reference``.

:func:`reference_statistics` runs the trained model on a seeded sample of at most :data:`REFERENCE_ROWS`
training inputs and bins inputs and predictions with :func:`service.ops.drift_stats.build_reference`
(which says which groups a model gets), so the server (:mod:`service.ops.drift`) bins what it answers with
the very same code. The training pipeline calls it for every model it exports.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from service.ops.drift_stats import build_reference

REFERENCE_ROWS = 10000


class Predictor(Protocol):
    """What is needed of the model: Keras' ``predict``."""

    def predict(self, x: np.ndarray, batch_size: int = ..., verbose: Any = ...) -> Any: ...


def reference_statistics(
    model: Predictor, x_train: np.ndarray, labels: list[str] | None, seed: int = 0
) -> dict[str, Any]:
    """The ``reference`` block of ``metadata.json`` for ``model`` trained on ``x_train`` (JSON-ready)."""
    rows = len(x_train)
    if rows > REFERENCE_ROWS:
        pick = np.sort(np.random.default_rng(seed).choice(rows, REFERENCE_ROWS, replace=False))
        inputs, source = (
            x_train[pick],
            f"{REFERENCE_ROWS} of {rows} training inputs (seeded sample, seed {seed})",
        )
    else:
        inputs, source = x_train, f"all {rows} training inputs"
    outputs = np.asarray(model.predict(inputs, batch_size=1024, verbose=0))
    return build_reference(inputs, outputs, labels, source).model_dump(mode="json")
