"""All server settings in one typed module.

Every field can be set through an environment variable with the ``SERVING_`` prefix (for example
``SERVING_PORT=3001``); list fields take JSON (``SERVING_ONNX_PROVIDERS='["CPUExecutionProvider"]'``).
Per-model overrides (runtime, providers, batching, version policy, labels) live in the repository's
``serving.yaml`` (see :mod:`service.repository`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

RuntimeName = Literal["onnx", "tensorflow", "keras", "openvino"]
Precision = Literal["fp32", "int8", "bf16"]


class Settings(BaseSettings):
    """Server configuration; the README's configuration table documents the same fields."""

    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(3000, description="HTTP port for every REST protocol and /metrics.")
    workers: int = Field(2, ge=1, description="BentoML worker processes.")
    repository: Path = Field(Path("models"), description="Model repository root.")
    poll_interval_s: float = Field(2.0, ge=0, description="Repository poll interval; 0 disables hot reload.")
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1, description="Largest request body accepted (413 above)."
    )
    compress_min_bytes: int = Field(
        4096,
        ge=0,
        description="Answers of at least this many bytes are gzip- or deflate-compressed for a client whose "
        "Accept-Encoding asks; 0 = never.",
    )
    max_rows: int = Field(
        16384, ge=1, description="Most rows (first dimension) of a tensor in one request (413 above)."
    )
    max_elements: int = Field(
        4 * 1024 * 1024,
        ge=1,
        description="Most elements per tensor and per request, counted on the declared shapes before "
        "anything is allocated (413 above).",
    )
    max_json_depth: int = Field(
        32, ge=1, description="Deepest nesting of a tensor: JSON list depth or declared rank (400 above)."
    )
    max_inputs: int = Field(
        16, ge=1, description="Most input tensors, and most requested outputs, in one request (413 above)."
    )
    max_name_length: int = Field(
        256, ge=1, description="Longest model, label, input or output name in a request (400 above)."
    )
    grpc_max_receive_bytes: int = Field(
        16 * 1024 * 1024, ge=1, description="Largest gRPC request message (RESOURCE_EXHAUSTED above)."
    )
    grpc_max_send_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="Largest gRPC response message (RESOURCE_EXHAUSTED above)."
    )
    grpc_compression: Literal["none", "gzip", "deflate"] = Field(
        "none",
        description="Compression of both gRPC servers' answers (as Triton's "
        "--grpc-infer-response-compression-level): smaller answers, more server CPU. Every client must "
        "accept the algorithm (gRPC's C-core and Java clients do by default; Go needs its gzip package).",
    )
    runtime: RuntimeName = Field("onnx", description="Default runtime for models without an override.")
    precision: Precision = Field(
        "fp32",
        description="Default numeric precision: fp32 (model.onnx), int8 (model.int8.onnx, onnx and openvino "
        "runtimes) or bf16 (openvino, where the CPU has bf16; else fp32 with a warning). Fixed per load.",
    )
    onnx_providers: list[str] = Field(
        ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        description="ONNX Runtime execution providers in order of preference; absent ones are skipped.",
    )
    onnx_threads: int = Field(
        1, ge=0, description="ONNX Runtime intra-op threads per session (0 = ORT default)."
    )
    inline_run_us: float = Field(
        300.0,
        ge=0,
        description="A batch a CPU runtime (ONNX Runtime's CPU provider, OpenVINO on CPU) is expected to "
        "finish within this many microseconds (from its recent calls) runs on the event loop instead of "
        "the runtime thread, which saves the two thread hand-offs; under load a batch merged from several "
        "requests also runs there when it is shorter than one measured pass of the event loop (at most "
        "20 ms); 0 = always on the runtime thread.",
    )
    onnx_strict_providers: bool = Field(
        False,
        description="A configured ONNX Runtime provider that is not available fails the version's load "
        "(state failed, with the reason) instead of falling back with a warning.",
    )
    tensorrt_cache_dir: Path = Field(
        Path("/tmp/keras-serving-trt"),
        description="TensorRT engine cache (one folder per model, version and precision below it), so "
        "engines are built once, not at every load.",
    )
    tensorrt_fp16: bool = Field(
        False, description="TensorRT builds FP16 engines (faster on tensor cores; outputs move by ~1e-3)."
    )
    max_batch_size: int = Field(
        128,
        ge=1,
        description="Default largest merged batch (rows) per runtime call (128: two 64-row requests share a "
        "call; README, Batching).",
    )
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        description="Default extra wait for company before running a batch; 0 = run as soon as idle.",
    )
    max_queue_rows: int = Field(
        16384, ge=1, description="Hard cap on rows queued per model version per worker (503 above)."
    )
    max_queue_delay_ms: float = Field(
        500.0,
        gt=0,
        description="Default admission budget: a request whose expected queue wait (queued rows x "
        "measured seconds per row) is over it is rejected at once with 503 and a Retry-After; while "
        "more than about 1 % of admitted requests wait longer than it, the batcher admits at a lower "
        "expected wait (down to a quarter of it).",
    )
    max_inflight: int = Field(
        512,
        ge=1,
        description="Inference requests in flight per worker (HTTP and gRPC); above it, 503 at once "
        "without reading the body.",
    )
    drain_s: float = Field(
        10.0,
        ge=0,
        description="After SIGTERM: readiness answers 503 and requests are still answered (with "
        "Connection: close) for up to this long, then the servers stop; exit within it + 1 s.",
    )
    request_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Time limit per HTTP request until its answer starts (504 after); clients may ask "
        "for less (X-Request-Timeout-Ms, gRPC deadline, V2 parameters.timeout).",
    )
    sticky_header: str = Field(
        "X-User-Id",
        description="Request header (gRPC metadata key) whose value keeps a client on one variant of a "
        "traffic split (same value, same variant); empty = no stickiness.",
    )
    shadow_queue_size: int = Field(
        64,
        ge=1,
        description="Mirrored (shadow) requests waiting per worker; when full, or when real work keeps the "
        "shadow or primary version busy for 250 ms, a mirrored request is dropped and counted.",
    )
    tracing: Literal["off", "otlp", "console"] = Field(
        "off",
        description="OpenTelemetry spans of inference requests (ingress, queue, compute, encode): off, "
        "otlp (OTLP/HTTP to tracing_endpoint) or console (JSON on stdout).",
    )
    tracing_endpoint: str = Field(
        "",
        description="OTLP/HTTP traces URL (e.g. http://collector:4318/v1/traces); empty = the "
        "exporter's default (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else http://localhost:4318/v1/traces).",
    )
    tracing_sample_ratio: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of requests without a sampled traceparent that are traced (a client's "
        "sampling decision is followed).",
    )
    tracing_service_name: str = Field("keras-serving", description="service.name of the spans.")
    capture_dir: Path = Field(
        Path("capture"),
        description="Payload capture files (JSONL, one file set per worker process); created when a model "
        "captures.",
    )
    capture_percent: float = Field(
        0.0,
        ge=0,
        le=100,
        description="Share (percent) of answers captured for models without capture.percent in "
        "serving.yaml; 0 = off.",
    )
    capture_max_file_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="A capture file is closed before it grows over this size."
    )
    capture_max_file_age_s: float = Field(
        3600.0, gt=0, description="A capture file is closed once it is this old (a new one is started)."
    )
    capture_max_total_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=1,
        description="Closed capture files kept in the directory, all workers together; the oldest are "
        "deleted first.",
    )
    capture_queue: int = Field(
        1024,
        ge=1,
        description="Captured answers waiting for the writer thread, per worker; beyond it they are "
        "dropped and counted.",
    )
    state_dir: Path = Field(
        Path("state"),
        description="State shared by the workers: the feedback store (feedback.sqlite3, SQLite in WAL mode).",
    )
    feedback_keep_s: float = Field(
        86400.0,
        gt=0,
        description="How long predictions are remembered for feedback, for models without "
        "feedback.keep_s in serving.yaml.",
    )
    feedback_window: int = Field(
        1000,
        ge=1,
        description="The live accuracy and mean absolute error gauges cover at most this many of the "
        "latest feedback items...",
    )
    feedback_window_s: float = Field(3600.0, gt=0, description="...received within this many seconds.")
    feedback_queue: int = Field(
        4096,
        ge=1,
        description="Predictions waiting to be written to the feedback store, per worker; beyond it they "
        "are dropped and counted.",
    )
    drift_enabled: bool = Field(
        True,
        description="Drift scores for every version whose metadata.json has a reference, for models "
        "without drift.enabled in serving.yaml.",
    )
    drift_window_rows: int = Field(
        1000,
        ge=10,
        le=1_000_000,
        description="Rows (the last answered, sampled above drift_sample_rows_per_s) a drift score is "
        "computed over, per version and worker, for models without drift.window_rows in serving.yaml.",
    )
    drift_interval_s: float = Field(
        1.0, gt=0, description="How often the drift thread bins the queued rows and updates the scores."
    )
    drift_sample_rows_per_s: float = Field(
        250.0,
        gt=0,
        description="Answered rows per second, per version and worker, above which drift scores a random "
        "sample of them (each row kept with probability this / the rate of the last interval; the rows "
        "let go are counted), for models without drift.sample_rows_per_s in serving.yaml.",
    )
    drift_queue_rows: int = Field(
        8192,
        ge=1,
        description="Answered rows waiting to be binned for drift, per worker; beyond it they are dropped "
        "and counted.",
    )
    grpc_host: str = Field("127.0.0.1", description="Address the gRPC servers bind to.")
    grpc_tfserving_port: int = Field(8500, ge=0, description="TF Serving gRPC port (0 disables).")
    grpc_v2_port: int = Field(8001, ge=0, description="KServe V2 gRPC port (0 disables).")
    access_log: bool = Field(
        False, description="BentoML access log (costs ~10 % throughput; turns the fast lane off)."
    )
    log_verbose_level: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="Start value of Triton's log_verbose_level (changed at run time by POST /v2/logging "
        "or gRPC LogSettings): 1 and more write our debug lines, one per answered request among them.",
    )
    reuse_port: bool = Field(
        True,
        description="One HTTP listening socket per worker (SO_REUSEPORT) so connections spread over the "
        "workers; false = BentoML's one shared socket.",
    )
    fast_lane: bool = Field(
        True,
        description="Answer our REST routes without BentoML's per-request middleware (its request "
        "metrics, tracing, context); false sends every request through BentoML's stack.",
    )
    inference_tokens: list[SecretStr] = Field(
        [],
        description="Bearer tokens granting the inference scope (JSON list; kept only as sha256 hashes); "
        "any token (here, in admin_tokens or token_file) turns access control on.",
    )
    admin_tokens: list[SecretStr] = Field(
        [], description="Bearer tokens granting the admin scope (protected /metrics and health, docs)."
    )
    token_file: Path | None = Field(
        None, description="File of token hashes, one `sha256:<hex> <scope>[,<scope>]` per line."
    )
    protect_health: bool = Field(
        False, description="Health routes (/livez, /readyz[/{model}], /v2/health/*) need an admin token."
    )
    protect_metrics: bool = Field(False, description="/metrics needs an admin token.")
    cors_origins: list[str] = Field(
        [],
        description='Origins allowed to call the REST APIs from a browser (["*"] = any); empty = CORS off.',
    )
    tls_certfile: Path | None = Field(
        None, description="PEM certificate (chain): HTTP and both gRPC ports serve TLS only."
    )
    tls_keyfile: Path | None = Field(None, description="PEM private key of tls_certfile.")

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("SERVING_TLS_CERTFILE and SERVING_TLS_KEYFILE go together")
        short = [t for t in [*self.inference_tokens, *self.admin_tokens] if len(t.get_secret_value()) < 16]
        if short:
            raise ValueError("bearer tokens must be at least 16 characters (use secrets.token_urlsafe(32))")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
