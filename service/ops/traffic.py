"""The traffic split: a weighted choice between a model's versions or labels (canary releases).

``serving.yaml`` gives a model ``traffic: {stable: 90, canary: 10}`` (keys: labels of the model or version
numbers; weights >= 0, one > 0; checked when the file is loaded, so an unknown label is a configuration
error and the previous configuration stays in force). Only requests that name neither version nor label
are split. The choice is a point ``u`` in [0, 1) on the cumulative weights:

- with a routing key (the ``sticky_header`` setting, ``X-User-Id`` by default) ``u`` comes from a stable
  hash of key and model (blake2b), so a key lands on the same variant in every worker and after every
  restart, with no per-key memory;
- without one, ``u`` is random.

A variant whose version is not ready (loading, failed, not served by the policy) gets no traffic: its share
goes to the others in proportion to their weights (the same ``u``, so sticky keys stay put) and
``serving_traffic_fallbacks_total`` counts it; when no variant is ready the request fails with 503 naming
each variant's state. ``serving_traffic_requests_total{model,variant,version}`` counts the routed
requests; the answer carries the variant (``X-Model-Variant``, gRPC ``x-model-variant``) beside the
version that every answer already names.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service import context
from service.errors import Unavailable
from service.metrics import get_metrics
from service.models.version import State

if TYPE_CHECKING:
    from service.inference import InferenceRequest
    from service.models.config import RepositoryConfig
    from service.models.registry import ModelRegistry

log = logging.getLogger("service.ops")


def bucket(route_key: str, model: str) -> float:
    """A stable point in [0, 1) for a routing key and model: the same in every process and run."""
    digest = hashlib.blake2b(f"{model}\x00{route_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class Variant:
    key: str
    """The label or version number as ``serving.yaml`` names it."""
    version: int
    weight: float


@dataclass(frozen=True)
class Split:
    """One model's variants (those with a positive weight), in ``serving.yaml`` order."""

    model: str
    variants: tuple[Variant, ...]

    def pick(self, u: float, usable: tuple[Variant, ...] | None = None) -> Variant:
        """The variant at point ``u`` of the cumulative weights of ``usable`` (default: all)."""
        candidates = self.variants if usable is None else usable
        target = u * sum(v.weight for v in candidates)
        for variant in candidates:
            target -= variant.weight
            if target < 0:
                return variant
        return candidates[-1]  # u * total rounded up to total


class TrafficSplit:
    """The :class:`~service.ops.Router`: per model, the weighted, sticky choice of a variant."""

    def __init__(self, registry: ModelRegistry, rng: random.Random | None = None) -> None:
        self.registry = registry
        self.rng = rng or random.Random()
        self.splits: dict[str, Split] = {}
        self._counters: dict[tuple[str, str, int], Any] = {}

    def configure(self, config: RepositoryConfig) -> bool:
        """Take the splits of the current ``serving.yaml``; on when any model has one."""
        splits = {}
        for name, policy in config.models.items():
            if policy.traffic is None:
                continue
            variants = tuple(
                Variant(str(key), policy.variant_version(key), weight)
                for key, weight in policy.traffic.items()
                if weight > 0
            )
            splits[name] = Split(name, variants)
        if splits != self.splits:
            self._announce(splits)
        self.splits = splits
        return bool(splits)

    def _announce(self, splits: dict[str, Split]) -> None:
        """Log each new split, warn of variants whose version is not served, create their series at 0."""
        metrics = get_metrics()
        for split in splits.values():
            served = set(self.registry.models.get(split.model, {}))
            described = ", ".join(f"{v.key} (version {v.version}) {v.weight:g}" for v in split.variants)
            log.info("model %s: traffic split %s", split.model, described)
            for variant in split.variants:
                metrics.traffic_fallbacks.labels(split.model, variant.key)
                if variant.version not in served:
                    log.warning(
                        "model %s: traffic variant %s names version %s, which is not served; it gets no "
                        "traffic until it is",
                        split.model,
                        variant.key,
                        variant.version,
                    )

    def route(self, request: InferenceRequest, route_key: str | None) -> str | None:
        """Point ``request`` at its variant's version and return the variant's key (``None``: no split)."""
        split = self.splits.get(request.model)
        if split is None or request.model not in self.registry.models:
            return None  # no split, or a model this worker does not know (resolving it says why)
        u = bucket(route_key, request.model) if route_key else self.rng.random()
        variant = split.pick(u)
        if not self._ready(request.model, variant.version):
            variant = self._fallback(split, variant, u)
        request.version = variant.version
        self._count(request.model, variant)
        call = context.current()
        if call is not None:
            call.variant = variant.key
        return variant.key

    def _ready(self, model: str, version: int) -> bool:
        sv = self.registry.models.get(model, {}).get(version)
        return sv is not None and sv.state is State.READY

    def _fallback(self, split: Split, chosen: Variant, u: float) -> Variant:
        """Another ready variant in proportion to the weights (503 when there is none); counted."""
        usable = tuple(v for v in split.variants if self._ready(split.model, v.version))
        if not usable:
            versions = self.registry.models.get(split.model, {})
            states = {
                v.key: f"version {v.version} "
                + (str(versions[v.version].state) if v.version in versions else "not served")
                for v in split.variants
            }
            raise Unavailable(f"no variant of the traffic split of model {split.model!r} is ready: {states}")
        get_metrics().traffic_fallbacks.labels(split.model, chosen.key).inc()
        return split.pick(u, usable)

    def _count(self, model: str, variant: Variant) -> None:
        key = (model, variant.key, variant.version)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = get_metrics().traffic.labels(
                model, variant.key, str(variant.version)
            )
        counter.inc()
