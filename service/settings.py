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

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

RuntimeName = Literal["onnx", "tensorflow", "keras"]


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
    runtime: RuntimeName = Field("onnx", description="Default runtime for models without an override.")
    onnx_providers: list[str] = Field(
        ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        description="ONNX Runtime execution providers in order of preference; absent ones are skipped.",
    )
    onnx_threads: int = Field(
        1, ge=0, description="ONNX Runtime intra-op threads per session (0 = ORT default)."
    )
    max_batch_size: int = Field(64, ge=1, description="Default largest merged batch (rows) per runtime call.")
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        description="Default extra wait for company before running a batch; 0 = run as soon as idle.",
    )
    max_queue_rows: int = Field(
        16384, ge=1, description="Rows queued per model version before 503 (overload)."
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="Time limit per HTTP request until its answer starts (504 after)."
    )
    grpc_host: str = Field("127.0.0.1", description="Address the gRPC servers bind to.")
    grpc_tfserving_port: int = Field(8500, ge=0, description="TF Serving gRPC port (0 disables).")
    grpc_v2_port: int = Field(8001, ge=0, description="KServe V2 gRPC port (0 disables).")
    access_log: bool = Field(
        False, description="BentoML access log (costs ~10 % throughput; turns the fast lane off)."
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
