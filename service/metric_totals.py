"""The server's own metric values summed over its worker processes, for answers built from them.

Under ``bentoml serve`` every worker writes its values to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (the directory BentoML's ``/metrics`` reads); a worker reads them all here
(a worker that exited keeps its counts, as ``/metrics`` keeps them). Outside BentoML's workers the
values are this process's own. Reading costs milliseconds (every worker's files): callers run it off
the event loop, and nothing on the request path does.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable

from prometheus_client import REGISTRY, Metric
from prometheus_client.multiprocess import MultiProcessCollector

Key = tuple[str, str, str, str]
"""A sample's name and its ``model``, ``version`` and ``outcome`` labels (``""`` where it has none)."""


def _collected() -> Iterable[Metric]:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:  # prometheus_client chose the memory-mapped values at import, by the same variable
        return MultiProcessCollector(None, path).collect()
    return REGISTRY.collect()


def totals(names: Iterable[str]) -> dict[Key, float]:
    """The sum of every sample named in ``names`` (``serving_batch_size_sum``, ...) per model, version and
    outcome, over the other labels (protocol, code) and the workers; samples of no version are left out.
    A gauge's workers are already reduced by its multiprocess mode (``max``: the largest) when it has no
    other label, so its total is that value."""
    wanted = frozenset(names)
    summed: dict[Key, float] = defaultdict(float)
    for metric in _collected():
        for sample in metric.samples:
            if sample.name in wanted:
                labels = sample.labels
                model, version = labels.get("model", ""), labels.get("version", "")
                if model and version:
                    summed[sample.name, model, version, labels.get("outcome", "")] += sample.value
    return summed
