"""The data plane: one path for every protocol from decoded tensors to outputs.

It resolves the model version (name, version or label), validates inputs against the signature
(names, dtypes, shapes), runs them through the version's batcher and records metrics. It knows
nothing of HTTP or gRPC; protocol adapters decode, call :meth:`DataPlane.infer`, and encode. For
status and metadata it hands them :class:`VersionView` snapshots, never the registry's own objects.

Admission happens before the expensive part: adapters call :meth:`DataPlane.enter` (the per-worker
in-flight cap) before reading a body and :meth:`DataPlane.admitted` (the version's expected queue delay) as
soon as the model is known, before reading or decoding the body. A request may carry a deadline (the client's
timeout) and a ``watch`` that cancels it when the client goes away; queued work of either is dropped
unrun by the batcher.

Model operations (:mod:`service.ops`: traffic split, shadow, capture, feedback, drift) hang off two hooks,
:meth:`~service.ops.Operations.route` before the version is resolved and
:meth:`~service.ops.Operations.served` after each answer; the request id and sticky routing key come from
the call context (:mod:`service.context`) the protocol's ingress opened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import TYPE_CHECKING, Any

from service import context
from service.batching import Ticket
from service.errors import (
    ClientGone,
    InternalError,
    NotFound,
    Overloaded,
    ServingError,
    TimedOut,
)
from service.inference import InferenceRequest, InferenceResponse, Tensors, select_outputs, validate_inputs
from service.limits import Limits
from service.metrics import RequestSeries, get_metrics
from service.models.config import ModelPolicy, ModelSettings
from service.models.registry import ModelRegistry
from service.models.version import ServedVersion, State, VersionView
from service.ops import Operations, Served

if TYPE_CHECKING:
    from service.tracing import Trace

__all__ = ["DataPlane", "InferenceRequest", "InferenceResponse", "State", "VersionView"]

log = logging.getLogger("service.dataplane")
WATCH_AFTER_S = 0.02
"""A request expected to wait longer than this in the queue is watched for its client leaving (a watch
costs two tasks, more than a short wait is worth)."""


_OUTCOMES = {ClientGone.http_status: "cancelled", TimedOut.http_status: "timeout"}


class DataPlane:
    """Validation, batching and metrics around the registry; the only thing protocols talk to."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.limits = Limits.from_settings(registry.settings)
        """The request limits every protocol enforces (the decoders before they allocate)."""
        self.max_inflight = registry.settings.max_inflight
        self.inflight = 0
        """Inference requests of this worker between :meth:`enter` and :meth:`leave`."""
        self.draining = False
        """Set on SIGTERM: readiness answers 503 from then on (see :mod:`service.bento.drain`)."""
        self.others_ready: Callable[[], bool] = lambda: True
        """Whether the server's other workers have been ready (the service sets it; see
        :mod:`service.bento.workers`): readiness is the whole server's, not one worker's."""
        self.ops = Operations(registry)
        """Traffic split, shadow, capture, feedback and drift (:mod:`service.ops`)."""

    # ----- admission ---------------------------------------------------------------------------
    def enter(self, protocol: str) -> None:
        """Count a request in flight, or refuse it (503) when the worker is at its in-flight cap."""
        if self.inflight >= self.max_inflight:
            error = Overloaded(
                f"this worker has {self.inflight} requests in flight (limit {self.max_inflight}); retry later",
                "inflight",
            )
            self._count(protocol, "", "", error, perf_counter())
            raise error
        self.inflight += 1

    def leave(self) -> None:
        self.inflight -= 1

    @contextmanager
    def in_flight(self, protocol: str) -> Iterator[None]:
        """:meth:`enter` ... :meth:`leave` around a block (the gRPC inference methods)."""
        self.enter(protocol)
        try:
            yield
        finally:
            self.leave()

    def admitted(
        self, protocol: str, model: str, version: int | None = None, label: str | None = None
    ) -> Ticket:
        """Admission as soon as the target is known, before the body is read or decoded: 503 with
        Retry-After at once when the version cannot take the request within its queue-delay budget
        (unknown or unready models raise their usual errors). Use the ticket as a context manager
        (``with dataplane.admitted(...) as ticket``): inside the block the request counts as queued;
        pass the ticket on in :attr:`InferenceRequest.ticket`."""
        started = perf_counter()
        try:
            self.limits.check_name("model", model)
            if label is not None:
                self.limits.check_name("label", label)
            sv = self.registry.resolve(model, version, label)
            assert sv.batcher is not None
            return Ticket(sv.batcher)
        except ServingError as exc:
            known = model if model in self.registry.models else "__unknown__"
            self._count(protocol, known, "" if version is None else str(version), exc, started)
            raise

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        metrics = get_metrics()
        started = perf_counter()
        model_label = request.model if request.model in self.registry.models else "__unknown__"
        version_label = ""
        call = context.current()
        trace = call.trace if call is not None else None
        ops = self.ops if self.ops.active else None
        variant = None
        try:
            self._check_names(request)
            if ops is not None:
                variant = ops.route(request, call.route_key if call is not None else None)
            sv = self.registry.resolve(request.model, request.version, request.label)
            version_label = str(sv.version)
            if call is not None:
                call.model, call.version = sv.name, sv.version
            series = metrics.request_series(sv.name, version_label, request.protocol)
            sv.acquire()
            series.inflight.inc()
            try:
                arrays, outputs = await self._run(sv, request, series, trace)
            finally:
                sv.release()
                series.inflight.dec()
            request_id = request.request_id or (
                call.request_id if call is not None else context.new_request_id()
            )
            answer = select_outputs(outputs, request.outputs) if request.outputs else outputs
            if ops is not None:
                ops.served(
                    Served(sv.name, sv.version, request.protocol, request_id, arrays, outputs,
                           perf_counter() - started, variant)
                )  # fmt: skip
        except ServingError as exc:
            self._count(request.protocol, model_label, version_label, exc, started)
            raise
        except asyncio.CancelledError:  # the transport cancelled the call: client gone or deadline
            self._count(request.protocol, model_label, version_label, ClientGone("cancelled"), started)
            raise
        except Exception as exc:
            log.exception("inference failed for model %s", request.model)
            error = InternalError()
            self._count(request.protocol, model_label, version_label, error, started)
            raise error from exc
        elapsed = perf_counter() - started
        series.success.inc()
        series.latency.observe(elapsed)
        series.success_seconds.inc(elapsed)
        if trace is not None:
            trace.answered()
        return InferenceResponse(sv.name, sv.version, sv.runtime_kind, answer, request_id, variant)

    async def _run(
        self, sv: ServedVersion, request: InferenceRequest, series: RequestSeries, trace: Trace | None = None
    ) -> tuple[Tensors, Tensors]:
        """The validated inputs and every output of the model for them (the queue and compute spans
        drawn on ``trace`` afterwards, from the batcher's timing)."""
        assert sv.metadata is not None and sv.batcher is not None
        arrays, rows = validate_inputs(sv.metadata, request.inputs, request.typed, self.limits)
        batcher = sv.batcher
        # its rows are about to be queued for real: the time since admission counts in its wait
        admitted_s = 0.0 if request.ticket is None else request.ticket.release(queued=True)
        submitted = perf_counter() if trace is not None else 0.0
        work: Awaitable[Any] = batcher.submit(arrays, rows, request.deadline, admitted_s)
        if request.watch is not None and batcher.busy and batcher.may_wait(WATCH_AFTER_S):
            work = request.watch(work)  # it may wait: drop it if the client leaves meanwhile
        if request.deadline is None:
            outputs, timing = await work
        else:
            try:
                async with asyncio.timeout_at(request.deadline):
                    outputs, timing = await work
            except TimeoutError:
                raise TimedOut(
                    "the request's deadline passed before its answer was ready",
                    queued_rows=batcher.queued_rows,
                ) from None
        series.queue.observe(timing.queue_s)
        series.compute.observe(timing.compute_s)
        if trace is not None:
            trace.batched(sv.name, sv.version, rows, submitted, timing)
        return arrays, outputs

    def _count(self, protocol: str, model: str, version: str, error: ServingError, started: float) -> None:
        """Count a failed request (answered ones count through their bound :class:`RequestSeries`)."""
        metrics = get_metrics()
        code = error.http_status
        outcome = _OUTCOMES.get(code, "client_error" if code < 500 else "server_error")
        metrics.requests.labels(model, version, protocol, str(code), outcome).inc()
        metrics.latency.labels(model, version, protocol).observe(perf_counter() - started)
        if isinstance(error, Overloaded):
            metrics.rejected.labels(model, version, protocol, error.reason).inc()

    def _check_names(self, request: InferenceRequest) -> None:
        """400 for over-long names, 413 for too many requested outputs (before any lookup)."""
        limits = self.limits
        limits.check_name("model", request.model)
        if request.label is not None:
            limits.check_name("label", request.label)
        for key in request.inputs:
            if key is not None:
                limits.check_name("input", key)
        if request.outputs:
            limits.check_count("requested outputs", len(request.outputs))
            for output in request.outputs:
                limits.check_name("output", output)

    # ----- model information for the protocols (read-only views) -----------------------------
    @property
    def max_body_bytes(self) -> int:
        """The largest request body (bytes) any protocol accepts."""
        return self.registry.settings.max_body_bytes

    def model_names(self) -> list[str]:
        return sorted(self.registry.models)

    def _versions(self, name: str) -> list[ServedVersion]:
        self.limits.check_name("model", name)
        if name not in self.registry.models:
            raise NotFound(f"model {name!r} not found; available models: {self.model_names()}")
        return [sv for _, sv in sorted(self.registry.models[name].items())]

    def versions(self, name: str) -> list[VersionView]:
        """Every known version of ``name`` (all states), oldest first; 404 for unknown models."""
        return [sv.view() for sv in self._versions(name)]

    def find(self, name: str, version: int | None = None, label: str | None = None) -> VersionView:
        """A version for status or metadata, whatever its state: the named one, the label's, or else the
        default (or the newest known) version. 404 only."""
        versions = self._versions(name)
        if label is not None:
            self.limits.check_name("label", label)
            version = self.registry.label_version(name, label)
        if version is None:
            return (self.registry.default_version(name) or versions[-1]).view()
        for sv in versions:
            if sv.version == version:
                return sv.view()
        raise NotFound(
            f"version {version} of model {name!r} not found; known versions: {[v.version for v in versions]}"
        )

    def configuration(self, name: str) -> tuple[ModelPolicy, ModelSettings]:
        """``name``'s ``serving.yaml`` entry and the values its versions load with (each one it leaves
        unset the server's); 404 for unknown models."""
        self._versions(name)
        policy = self.registry.policy(name)
        return policy, policy.effective(self.registry.settings)

    @property
    def poll_interval_s(self) -> float:
        """How often the repository is looked at for new and removed versions (0: never)."""
        return self.registry.settings.poll_interval_s

    def labels(self, name: str) -> dict[str, int]:
        """The labels ``serving.yaml`` gives ``name`` (label -> version)."""
        return dict(self.registry.policy(name).labels)

    def default_version(self, name: str) -> int | None:
        """The version a request naming neither version nor label gets (``None``: none is ready)."""
        default = self.registry.default_version(name)
        return default.version if default is not None else None

    def ready(self) -> bool:
        """Whether the server takes traffic: this worker's models are loaded, it is not draining, and
        every worker of the server has been ready (:attr:`others_ready`)."""
        return self.registry.ready() and not self.draining and self.others_ready()

    def model_ready(self, name: str) -> tuple[bool, str]:
        """Whether ``name`` has a ready default version, with a reason when not."""
        versions = self.versions(name)
        default = self.default_version(name)
        if default is not None:
            return True, f"version {default} ready"
        states = {v.version: str(v.state) + (f" ({v.error})" if v.error else "") for v in versions}
        return False, f"no ready version: {states}"
