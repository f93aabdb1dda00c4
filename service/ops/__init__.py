"""Model operations around the data plane: traffic split, shadow traffic, payload capture, feedback, drift.

The data plane calls two hooks and knows nothing else of these features:

- :meth:`Operations.route` before it resolves the version of a request that names neither version nor
  label: a traffic split in ``serving.yaml`` may pick a variant (sticky by the call's routing key);
- :meth:`Operations.served` after each successful answer, with a :class:`Served` record, which every
  active feature (shadow, capture, feedback, drift) observes. Observers must stay cheap on the request
  path: they hand slow work to a bounded queue or thread and count what they drop.

Each feature is a :class:`Feature` registered in :meth:`Operations.__init__`; after every registry pass
(``serving.yaml`` may have changed) :meth:`Operations.configure` asks each whether it is on. With nothing
on, both hooks cost the data plane one attribute check (:attr:`Operations.active`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from service.ops.capture import Capture
from service.ops.drift import Drift
from service.ops.feedback import Feedback
from service.ops.shadow import Shadow
from service.ops.traffic import TrafficSplit

if TYPE_CHECKING:
    from service.inference import InferenceRequest
    from service.models.config import RepositoryConfig
    from service.models.registry import ModelRegistry

log = logging.getLogger("service.ops")
Tensors = dict[str, np.ndarray]


@dataclass(slots=True)
class Served:
    """One successful answer as the data plane saw it."""

    model: str
    version: int
    protocol: str
    request_id: str
    inputs: Tensors
    """The validated model inputs (model dtypes, batch first), as they went to the runtime."""
    outputs: Tensors
    """Every output of the model for these rows (before the request's output selection)."""
    seconds: float
    """Data-plane latency: from the call into :meth:`DataPlane.infer` to the outputs."""
    variant: str | None = None
    """The split's variant key (a label or version) when :meth:`Operations.route` chose the version."""


class Feature(Protocol):
    """One model-operations feature (shadow, capture, feedback, drift); one that holds files or threads
    also has a ``close()`` method, which :meth:`Operations.close` calls at shutdown."""

    def configure(self, config: RepositoryConfig) -> bool:
        """Take the current ``serving.yaml`` (and settings); return whether it observes anything now."""

    def observe(self, served: Served) -> None:
        """Take one answer; must not block (queue slow work, drop and count under pressure)."""


class Router(Protocol):
    """The traffic split: picks a variant for a request naming neither version nor label."""

    def configure(self, config: RepositoryConfig) -> bool:
        """Take the current ``serving.yaml``; return whether any model has a split."""

    def route(self, request: InferenceRequest, route_key: str | None) -> str | None:
        """Set ``request.version`` or ``request.label`` for the chosen variant and return its key, or
        leave the request alone and return ``None`` (no split for its model)."""


class Operations:
    """The hub the data plane calls; each feature registers here."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.splitter: Router | None = TrafficSplit(registry)
        """The traffic split (:mod:`service.ops.traffic`), routing only while :meth:`configure` says so."""
        self.feedback = Feedback(registry)
        """Predictions remembered for ``POST /v1/feedback`` (:mod:`service.ops.feedback`), which calls it."""
        self.features: list[Feature] = [Shadow(registry), Capture(registry), self.feedback, Drift(registry)]
        # features register here, e.g. self.features.append(Capture(registry.settings))
        self.router: Router | None = None
        self.observers: list[Feature] = []
        registry.on_sync.append(self.configure)

    def configure(self) -> None:
        """Ask every feature whether it is on under the registry's current ``serving.yaml``."""
        config = self.registry.config
        self.router = self.splitter if self.splitter is not None and self.splitter.configure(config) else None
        self.observers = [f for f in self.features if f.configure(config)]

    def close(self) -> None:
        """At shutdown: every feature with a ``close()`` method writes what it holds and closes its files."""
        for feature in self.features:
            close = getattr(feature, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("%s failed to close", type(feature).__name__)

    @property
    def active(self) -> bool:
        return self.router is not None or bool(self.observers)

    def route(self, request: InferenceRequest, route_key: str | None) -> str | None:
        """The variant the split picks for ``request`` (``None``: none, or the request named its target)."""
        if self.router is None or request.version is not None or request.label is not None:
            return None
        return self.router.route(request, route_key)

    def served(self, served: Served) -> None:
        """Hand one answer to every active feature; a feature's failure is logged, never the request's."""
        for observer in self.observers:
            try:
                observer.observe(served)
            except Exception:
                log.exception("%s failed on a served request", type(observer).__name__)
