"""Shadow traffic: mirror a share of a model's answered requests to another version and compare.

``serving.yaml`` gives a model ``shadow: {target: canary, percent: 10}`` (a label or a version number). After
the primary version has answered (its answer and latency are not touched: :meth:`Shadow.observe` only
samples and appends to a bounded queue), a task of this worker lets mirrors gather for up to
:data:`GATHER_S` (or until :data:`GROUP` wait), then runs the queued requests, those of one primary version
together in one batch, through the target version's own batcher, with the primary's validated inputs, and
compares outputs:

- classifiers (metadata ``labels``, and a first output with one score per label, or one sigmoid score for
  two labels): per row, the same top class or not, ``serving_shadow_agreement_total{result=agree|disagree}``;
- regressors (everything else): the mean absolute difference over the outputs, one observation per
  request in ``serving_shadow_abs_diff``.

Real work always comes first: a mirrored request is dropped and counted
(``serving_shadow_dropped_total{reason}``) when the queue is full (``queue_full``; the
``shadow_queue_size`` setting), when for :data:`PATIENCE_S` the target's batcher always had work queued or
running, or the primary's had requests waiting (``busy``), when the target's admission refuses it (``rejected``), when the target is
not ready (``unavailable``) or when its signature does not take the primary's inputs (``incompatible``).
Requests answered by the target itself are not mirrored. Mirrored requests are not counted in
``serving_requests_total``; they have their own ``serving_shadow_requests_total`` and
``serving_shadow_duration_seconds`` (time in the target's batcher).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
from collections import deque
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING

import numpy as np

from service.errors import ServingError, Unavailable
from service.inference import validate_inputs
from service.limits import Limits
from service.metrics import get_metrics
from service.models.version import ServedVersion, State

if TYPE_CHECKING:
    from service.models.config import RepositoryConfig
    from service.models.registry import ModelRegistry
    from service.ops import Served
    from service.schema import ModelMetadata

log = logging.getLogger("service.ops")
Tensors = dict[str, np.ndarray]
REASONS = ("queue_full", "busy", "rejected", "unavailable", "incompatible")
GROUP = 64
"""Most queued mirrors run together in one batch."""
GATHER_S = 0.05
"""How long the first queued mirror waits for others before the batch runs. A runtime call costs the
worker far more than one row in it (measured on the CNN, 16 connections: mirrors run as they came, in
batches of 1-2 rows, cost 25 % more CPU per request at 10 % shadow); a shadow answer is late anyway."""
PATIENCE_S = 0.25
"""How long gathered mirrors wait for a moment when no real request waits (the check every
:data:`POLL_S`) before they are dropped as ``busy``: under load the primary's queue is empty between its
batches, so most mirrors find such a moment, but they never queue behind real work."""
POLL_S = 0.01


def classifier(metadata: ModelMetadata) -> bool:
    """Whether the model is a classifier: class labels, and a first output of one score per label (softmax
    or logits) or, for two labels, one sigmoid score."""
    labels, shape = metadata.labels, metadata.outputs[0].shape
    if not labels or len(labels) < 2 or len(shape) != 2:
        return False
    return shape[1] == len(labels) or (len(labels) == 2 and shape[1] == 1)


def top_classes(metadata: ModelMetadata, outputs: Tensors) -> np.ndarray | None:
    """Each row's top class by the model's first output, or ``None`` when the model is no classifier."""
    scores = outputs.get(metadata.outputs[0].name)
    if not classifier(metadata) or scores is None or scores.ndim != 2:
        return None
    if scores.shape[1] == 1:  # one sigmoid score: class 1 from 0.5
        return np.asarray(scores[:, 0] >= 0.5, np.int64)
    return np.asarray(scores.argmax(axis=1))


@dataclass(frozen=True)
class Comparison:
    """How a shadow answer compares with the primary's: rows agreeing and not (classifiers), or the
    mean absolute difference (regressors; ``None`` for classifiers)."""

    agree: int = 0
    disagree: int = 0
    abs_diff: float | None = None


def compare(metadata: ModelMetadata, primary: Tensors, shadow: Tensors) -> Comparison | None:
    """Compare two answers to the same rows (``None`` when their outputs do not line up)."""
    ours, theirs = top_classes(metadata, primary), top_classes(metadata, shadow)
    if ours is not None and theirs is not None and ours.shape == theirs.shape:
        same = int(np.count_nonzero(ours == theirs))
        return Comparison(same, len(ours) - same)
    names = [n for n in primary if n in shadow and primary[n].shape == shadow[n].shape]
    if not names:
        return None
    total = sum(float(np.abs(primary[n].astype(np.float64) - shadow[n]).sum()) for n in names)
    return Comparison(abs_diff=total / sum(primary[n].size for n in names))


@dataclass(frozen=True)
class Mirror:
    """One model's shadow: the target as written, its version, the share of answers mirrored (0-1)."""

    target: str
    version: int
    share: float


class Shadow:
    """The shadow :class:`~service.ops.Feature`: samples answers, mirrors them off the request path."""

    def __init__(
        self, registry: ModelRegistry, queue_size: int | None = None, rng: random.Random | None = None
    ) -> None:
        self.registry = registry
        self.queue_size = queue_size or registry.settings.shadow_queue_size
        self.rng = rng or random.Random()
        self.limits = Limits.from_settings(registry.settings)
        self.mirrors: dict[str, Mirror] = {}
        self.queue: deque[tuple[Served, Mirror]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._full: asyncio.Event | None = None
        """Set when :data:`GROUP` mirrors (or a full queue) wait: the gathering ends early."""

    def configure(self, config: RepositoryConfig) -> bool:
        mirrors = {}
        for name, policy in config.models.items():
            if policy.shadow is not None:
                target = policy.shadow
                version = policy.variant_version(target.target)
                mirrors[name] = Mirror(str(target.target), version, target.percent / 100)
        for name, mirror in mirrors.items():
            if self.mirrors.get(name) != mirror:
                log.info("model %s: mirroring %g %% to %s (version %s)", name, mirror.share * 100,
                         mirror.target, mirror.version)  # fmt: skip
            self._create_series(name, mirror)
        self.mirrors = mirrors
        return bool(mirrors)

    def _create_series(self, model: str, mirror: Mirror) -> None:
        """Every series the shadow may grow, at 0 from the start: rates, ``increase()`` and the alert then
        see its first increments too (a counter's first sample is only its base)."""
        metrics, target = get_metrics(), str(mirror.version)
        for reason in REASONS:
            metrics.shadow_dropped.labels(model, target, reason)
        for version, sv in self.registry.models.get(model, {}).items():
            if version == mirror.version or sv.metadata is None or sv.state is not State.READY:
                continue
            if classifier(sv.metadata):
                for result in ("agree", "disagree"):
                    metrics.shadow_agreement.labels(model, str(version), target, result)
            else:
                metrics.shadow_abs_diff.labels(model, str(version), target)

    def observe(self, served: Served) -> None:
        """Sample ``served`` and queue it for its shadow: O(1), never waits."""
        mirror = self.mirrors.get(served.model)
        if mirror is None or served.version == mirror.version or self.rng.random() >= mirror.share:
            return
        if len(self.queue) >= self.queue_size:
            self._drop(served.model, mirror, "queue_full")
            return
        self.queue.append((served, mirror))
        if self._task is None:
            self._full = asyncio.Event()
            # in a context of its own: not the request's call (its id, version and trace stay the request's)
            self._task = asyncio.get_running_loop().create_task(self._drain(), context=contextvars.Context())
        elif len(self.queue) >= min(GROUP, self.queue_size) and self._full is not None:
            self._full.set()

    async def idle(self) -> None:
        """Wait until every queued mirror has run or been dropped."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        """Gather mirrors (:data:`GATHER_S`), then run the queued ones until the queue is empty: one batch
        at a time, of the queued mirrors of one model and primary version (up to :data:`GROUP`), so that
        mirrored rows share runtime calls as the primary's rows do."""
        try:
            if self._full is not None and len(self.queue) < min(GROUP, self.queue_size):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(GATHER_S):
                        await self._full.wait()
            while self.queue:
                served, mirror = self.queue.popleft()
                group = [served]
                while self.queue and len(group) < GROUP and self._same(self.queue[0], served, mirror):
                    group.append(self.queue.popleft()[0])
                try:
                    await self._mirror(group, mirror)
                except Exception:
                    log.exception(
                        "shadow request to model %s version %s failed", served.model, mirror.version
                    )
                    metrics = get_metrics().shadow_requests
                    metrics.labels(served.model, str(mirror.version), "error").inc(len(group))
        finally:
            self._task = None

    @staticmethod
    def _same(queued: tuple[Served, Mirror], served: Served, mirror: Mirror) -> bool:
        """Whether a queued mirror can share ``served``'s batch: same target, model, primary version and
        row shapes (a free dimension, such as a sequence length, may differ between requests)."""
        other = queued[0]
        return (
            queued[1] == mirror
            and other.model == served.model
            and other.version == served.version
            and other.inputs.keys() == served.inputs.keys()
            and all(a.shape[1:] == served.inputs[k].shape[1:] for k, a in other.inputs.items())
        )

    async def _mirror(self, group: list[Served], mirror: Mirror) -> None:
        model = group[0].model
        versions = self.registry.models.get(model, {})
        target, primary = versions.get(mirror.version), versions.get(group[0].version)
        if not _ready(target):
            return self._drop(model, mirror, "unavailable", len(group))
        if not await _quiet(target, primary):
            return self._drop(model, mirror, "busy", len(group))
        if not _ready(target):  # unloaded while it waited
            return self._drop(model, mirror, "unavailable", len(group))
        assert target is not None and target.batcher is not None and target.metadata is not None
        try:  # the group's inputs share names, row shapes and dtypes (_same): one check serves them all
            given: dict[str | None, np.ndarray] = {k: a for k, a in group[0].inputs.items()}
            first, _ = validate_inputs(target.metadata, given, True, self.limits)
        except ServingError:
            return self._drop(model, mirror, "incompatible", len(group))
        arrays = first if len(group) == 1 else _merged(group, first)
        rows = [len(next(iter(served.inputs.values()))) for served in group]
        metrics, label = get_metrics(), str(mirror.version)
        started = perf_counter()
        target.acquire()  # an unload of the target waits for this request
        try:
            outputs, _ = await target.batcher.submit(arrays, sum(rows))
        except Unavailable:  # overloaded (its admission said no) or closing
            return self._drop(model, mirror, "rejected", len(group))
        finally:
            target.release()
        seconds = perf_counter() - started
        latency = metrics.shadow_latency.labels(model, label)
        for _ in group:
            latency.observe(seconds)
        self._record(group, rows, mirror, target if primary is None else primary, outputs)
        metrics.shadow_requests.labels(model, label, "success").inc(len(group))
        return None

    def _record(
        self, group: list[Served], rows: list[int], mirror: Mirror, primary: ServedVersion, outputs: Tensors
    ) -> None:
        """Compare the group's answers with the shadow's ``outputs`` for the same rows, in order: a
        classifier's rows all at once (one increment per result), a regressor's request by request."""
        assert primary.metadata is not None
        first = group[0]
        metrics, labels = get_metrics(), (first.model, str(first.version), str(mirror.version))
        if classifier(primary.metadata):
            result = compare(primary.metadata, _answers(group), outputs)
            if result is not None and result.abs_diff is None:
                metrics.shadow_agreement.labels(*labels, "agree").inc(result.agree)
                metrics.shadow_agreement.labels(*labels, "disagree").inc(result.disagree)
                return
        offset = 0
        for served, n in zip(group, rows, strict=True):
            mine = {name: out[offset : offset + n] for name, out in outputs.items()}
            offset += n
            one = compare(primary.metadata, served.outputs, mine)
            if one is not None and one.abs_diff is not None:
                metrics.shadow_abs_diff.labels(*labels).observe(one.abs_diff)

    def _drop(self, model: str, mirror: Mirror, reason: str, count: int = 1) -> None:
        get_metrics().shadow_dropped.labels(model, str(mirror.version), reason).inc(count)


def _merged(group: list[Served], first: Tensors) -> Tensors:
    """The group's inputs as one batch, rows in order, in the dtypes :func:`validate_inputs` gave the first
    request's (the primary validated every request already: same names, row shapes and dtypes)."""
    return {
        name: np.concatenate([served.inputs[name] for served in group]).astype(array.dtype, copy=False)
        for name, array in first.items()
    }


def _answers(group: list[Served]) -> Tensors:
    """The primary's answers of the group as one batch (the outputs every request has, same row shapes)."""
    names = [n for n in group[0].outputs if all(n in served.outputs for served in group)]
    try:
        return {n: np.concatenate([served.outputs[n] for served in group]) for n in names}
    except ValueError:  # row shapes differ: nothing lines up
        return {}


def _ready(sv: ServedVersion | None) -> bool:
    return sv is not None and sv.state is State.READY and sv.batcher is not None


def _waiting(sv: ServedVersion | None) -> bool:
    """Whether real requests wait in ``sv``'s queue (the server is under load: shadows yield)."""
    return sv is not None and sv.batcher is not None and sv.batcher.queued_rows > 0


async def _quiet(target: ServedVersion | None, primary: ServedVersion | None) -> bool:
    """Wait (up to :data:`PATIENCE_S`, looking every :data:`POLL_S`) for a moment when the target's batcher
    is idle and no real request waits for the primary's; ``False`` when none came."""
    waited = 0.0
    while (target is not None and target.batcher is not None and target.batcher.busy) or _waiting(primary):
        if waited >= PATIENCE_S:
            return False
        await asyncio.sleep(POLL_S)
        waited += POLL_S
    return True
