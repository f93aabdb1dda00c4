"""OpenTelemetry spans of inference requests: ingress, queue wait, compute and encode, on every protocol.

Off by default (``SERVING_TRACING=off``): then :data:`tracer` is ``None`` and an ingress pays one
attribute check; nothing here runs and OpenTelemetry is not even imported. With ``otlp`` (OTLP/HTTP to
``SERVING_TRACING_ENDPOINT``) or ``console`` (JSON lines on stdout) each inference request (REST
``POST``, the BentoML ``/predict``, gRPC ``Predict`` and ``ModelInfer``) gets one trace:

- ``ingress`` (kind SERVER): the whole request as its ingress sees it (the Admission middleware, the
  gRPC guard, the BentoML endpoint), a child of the client's span when it sent a W3C ``traceparent``;
  attributes ``serving.protocol``, ``serving.request_id``, ``serving.model``, ``serving.version``,
  ``serving.rows``, ``serving.status`` (the HTTP status of the answer; gRPC also ``rpc.grpc.status_code``);
- ``queue`` and ``compute``: the batcher's own timing of the request (:class:`service.batching.Timing`),
  drawn afterwards with explicit start and end times, so the batcher's loop does no extra work;
- ``encode``: from the data plane's answer to the start of the response (REST) or the handler's
  return (gRPC, BentoML).

The trace id comes back on every traced answer (``X-Trace-Id``; gRPC trailing metadata ``x-trace-id``).
The spans have their own ``TracerProvider`` (service name, sampler ``ParentBased(TraceIdRatio)``, a
batch span processor); BentoML's tracing (sample rate 0) and the global OpenTelemetry provider are
left alone. The data plane only calls the :class:`Trace` its call carries (``call.trace``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

    from service.batching import Timing
    from service.context import Call
    from service.settings import Settings

TRACE_ID_HEADER = "x-trace-id"
CARRIER_KEYS = ("traceparent", "tracestate")
"""The W3C trace-context headers (gRPC metadata keys) an ingress hands to :meth:`Tracer.begin`."""

tracer: Tracer | None = None
"""The process's tracer (:func:`configure`); ``None``: tracing is off."""


class Tracer:
    """Our spans: a private provider, its exporter and the W3C trace-context propagator."""

    def __init__(self, settings: Settings, exporter: SpanExporter) -> None:
        from opentelemetry.context import Context
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create({"service.name": settings.tracing_service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.tracing_sample_ratio)),
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.otel = self.provider.get_tracer("service.tracing")
        self.propagator = TraceContextTextMapPropagator()
        self.root = Context()
        """The parent of a request without ``traceparent``: none (not BentoML's span of the moment)."""
        self.server = SpanKind.SERVER
        self.error = Status(StatusCode.ERROR)
        self.child_of = set_span_in_context

    def begin(self, call: Call, protocol: str, carrier: Mapping[str, str] | None, **attributes: str) -> Trace:
        """Open the ``ingress`` span of ``call`` (the client's ``traceparent`` in ``carrier`` its
        parent) and hang the :class:`Trace` on the call."""
        parent = self.propagator.extract(carrier) if carrier else self.root
        attributes["serving.protocol"] = protocol
        started_ns, started = time.time_ns(), perf_counter()
        span = self.otel.start_span(
            "ingress", parent, kind=self.server, attributes=attributes, start_time=started_ns
        )
        call.trace = trace = Trace(self, span, call, started_ns, started)
        return trace

    def flush(self, timeout_ms: int = 10_000) -> bool:
        """Export every ended span now (tests; shutdown)."""
        return self.provider.force_flush(timeout_ms)

    def close(self, timeout_s: float = 2.0) -> None:
        """Export what is queued and stop, waiting at most ``timeout_s`` (a collector that is down must
        not hold up a worker's exit; the exporter's thread is a daemon)."""
        closing = threading.Thread(target=self.provider.shutdown, name="tracing-shutdown", daemon=True)
        closing.start()
        closing.join(timeout_s)


class Trace:
    """One request's spans; the ingress and the data plane call it, nothing else does."""

    __slots__ = ("_batched", "_encode_from", "_parent", "_started", "_started_ns", "_status", "_tracer",
                 "call", "recording", "span", "trace_id")  # fmt: skip

    def __init__(self, tracer: Tracer, span: Span, call: Call, started_ns: int, started: float) -> None:
        self._tracer = tracer
        self.span = span
        self.call = call
        self.trace_id = format(span.get_span_context().trace_id, "032x")
        """What the answer carries (``X-Trace-Id``), sampled or not."""
        self.recording = span.is_recording()
        self._started_ns = started_ns
        self._started = started
        self._batched = False
        self._parent: Context | None = None
        """The children's parent context (the ingress span), made for the first child."""
        self._encode_from: float | None = None
        self._status: tuple[int, int | None] | None = None

    def _ns(self, at: float) -> int:
        """A :func:`perf_counter` reading as the epoch nanoseconds spans take."""
        return self._started_ns + int((at - self._started) * 1e9)

    def _child(self, name: str, start: float, end: float, **attributes: Any) -> None:
        if self._parent is None:
            self._parent = self._tracer.child_of(self.span, self._tracer.root)
        span = self._tracer.otel.start_span(
            name, self._parent, attributes=attributes, start_time=self._ns(start)
        )
        span.end(self._ns(end))

    def batched(self, model: str, version: int, rows: int, submitted: float, timing: Timing) -> None:
        """The data plane got the outputs: ``queue`` and ``compute`` from the batcher's timing of a
        request queued at ``submitted`` (:func:`perf_counter`). Only the first pass counts (a shadow
        copy run in this call's context adds nothing)."""
        if not self.recording or self._batched:
            return
        self._batched = True
        self.span.set_attributes({"serving.model": model, "serving.version": version, "serving.rows": rows})
        computing = submitted + timing.queue_s
        self._child("queue", submitted, computing)
        self._child(
            "compute", computing, computing + timing.compute_s, **{"serving.batch_rows": timing.batch_rows}
        )

    def answered(self) -> None:
        """The data plane returned: encoding starts."""
        if self._batched and self._encode_from is None:
            self._encode_from = perf_counter()

    def responding(self, status: int, grpc_code: int | None = None) -> None:
        """The answer starts (HTTP status, or for gRPC the status's HTTP equivalent and its code):
        ``encode`` ends here."""
        if self._status is not None:
            return
        self._status = (status, grpc_code)
        if self._encode_from is not None:
            self._child("encode", self._encode_from, perf_counter())

    def end(self) -> None:
        """The request is over: the ingress span gets its status and request id, and ends (once)."""
        span = self.span
        if span.is_recording():  # sampled, not ended yet
            status, grpc_code = self._status or (500, None)
            span.set_attribute("serving.request_id", self.call.request_id)
            span.set_attribute("serving.status", status)
            if grpc_code is None:
                span.set_attribute("http.response.status_code", status)
            else:
                span.set_attribute("rpc.grpc.status_code", grpc_code)
            if self.call.version is not None:
                span.set_attribute("serving.version", self.call.version)
            if status >= 500:
                span.set_status(self._tracer.error)
            span.end(self._ns(perf_counter()))  # the children's clock, so they end within it


def carrier(pairs: Any) -> dict[str, str] | None:
    """The W3C trace-context entries of ``(key, value)`` pairs (ASGI headers, gRPC metadata), or ``None``."""
    found = None
    for key, value in pairs:
        name = key.decode("latin-1") if isinstance(key, bytes) else key
        if name in CARRIER_KEYS:
            if found is None:
                found = {}
            found[name] = value.decode("latin-1") if isinstance(value, bytes) else value
    return found


def exporter_for(settings: Settings) -> SpanExporter:
    """The exporter ``settings.tracing`` names."""
    if settings.tracing == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(service_name=settings.tracing_service_name)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:  # installed with the service's dependencies; not with --no-deps
        raise RuntimeError(
            "SERVING_TRACING=otlp needs opentelemetry-exporter-otlp-proto-http: pip install "
            "'opentelemetry-exporter-otlp-proto-http~=1.20' (a dependency of this project)"
        ) from exc
    return OTLPSpanExporter(endpoint=settings.tracing_endpoint or None)


def configure(settings: Settings, exporter: SpanExporter | None = None) -> Tracer | None:
    """Set :data:`tracer` from ``settings`` (``None`` when ``tracing`` is ``off``); ``exporter``
    replaces the one the setting names (tests: the SDK's in-memory exporter)."""
    global tracer
    shutdown()
    if settings.tracing != "off":
        tracer = Tracer(settings, exporter if exporter is not None else exporter_for(settings))
    return tracer


def shutdown() -> None:
    """Export what is left and turn tracing off (worker shutdown)."""
    global tracer
    if tracer is not None:
        tracer.close()
        tracer = None
