"""Triton's model configuration and model repository extensions, read-only, for REST and gRPC alike.

- **Model configuration** (``GET /v2/models/{model}[/versions/{version}]/config``, gRPC ``ModelConfig``):
  the model's configuration in Triton's ``ModelConfig`` shape, as tritonclient's ``get_model_config``
  (and what is built on it, such as PyTriton's ``ModelClient``) reads it: ``max_batch_size``, inputs and
  outputs without their batch dimension, the dynamic batcher's delay and queue policy, the version
  policy, and the settings that have no Triton field (``max_queue_rows``, runtime, precision, provider)
  under ``parameters``. ``max_queue_size`` and ``default_timeout_microseconds`` are our queue's row cap
  and expected-delay bound, which Triton counts in requests and waits out instead.
- **Repository index** (``POST /v2/repository/index``, gRPC ``RepositoryIndex``): every version the
  server knows, with its state in Triton's names (``READY``, ``LOADING``, ``UNLOADING``,
  ``UNAVAILABLE``) and, when not ready, why; ``{"ready": true}`` lists the ready ones only.
- **Load and unload** (``POST /v2/repository/models/{model}/load|unload``, the gRPC calls): the server
  loads what the repository holds and polls it, like Triton's ``--model-control-mode=poll``, which
  refuses these too; they answer 409 / ``FAILED_PRECONDITION`` saying how to load or unload instead
  (Triton's ``UNAVAILABLE`` / 503 reads as "try again later", and would count as a server error).
"""

from __future__ import annotations

from typing import Any

from service.dataplane import DataPlane, State, VersionView
from service.errors import NotEnabled
from service.protocols.v2.spec import datatype
from service.schema import TensorSpec

STATES = {
    State.READY: "READY",
    State.LOADING: "LOADING",
    State.UNLOADING: "UNLOADING",
    State.FAILED: "UNAVAILABLE",
    State.UNLOADED: "UNAVAILABLE",
}
"""Our version states in Triton's names."""


def model_config(dataplane: DataPlane, name: str, version: int | None) -> dict[str, Any]:
    """The Triton ``ModelConfig`` (as JSON) of ``name``; its signature is the given version's (default:
    the default version's); 404 for an unknown model or version."""
    view = dataplane.find(name, version)
    policy, settings = dataplane.configuration(name)
    meta = view.metadata
    if policy.policy == "all":
        versions: dict[str, Any] = {"all": {}}
    elif policy.policy == "specific":
        versions = {"specific": {"versions": policy.versions}}
    else:
        versions = {"latest": {"num_versions": policy.latest}}
    own = {
        "max_queue_rows": settings.max_queue_rows,
        "runtime": view.runtime,
        "precision": settings.precision,
        "execution_provider": view.provider or "none",
        "state": str(view.state),
    }
    return {
        "name": view.name,
        "platform": view.platform,
        "backend": view.runtime,
        "version_policy": versions,
        "max_batch_size": settings.max_batch_size,
        "input": _tensors(meta.inputs) if meta else [],
        "output": _tensors(meta.outputs) if meta else [],
        "dynamic_batching": {
            "max_queue_delay_microseconds": round(settings.max_wait_ms * 1000),
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": round(settings.max_queue_delay_ms * 1000),
                "max_queue_size": settings.max_queue_rows,
            },
        },
        "parameters": {key: {"string_value": str(value)} for key, value in own.items()},
    }


def _tensors(specs: list[TensorSpec]) -> list[dict[str, Any]]:
    """Triton's tensor entries: ``dims`` without the batch dimension (``max_batch_size`` covers it)."""
    return [{"name": s.name, "data_type": "TYPE_" + datatype(s.dtype), "dims": s.shape[1:]} for s in specs]


def repository_index(dataplane: DataPlane, ready_only: bool = False) -> list[dict[str, str]]:
    """Every known version of every model (name order, oldest version first), or only the ready ones."""
    return [
        _entry(view)
        for name in dataplane.model_names()
        for view in dataplane.versions(name)
        if view.ready or not ready_only
    ]


def _entry(view: VersionView) -> dict[str, str]:
    entry = {"name": view.name, "version": str(view.version), "state": STATES[view.state]}
    if not view.ready:
        entry["reason"] = view.error or str(view.state)
    return entry


def refuse_control(dataplane: DataPlane, action: str, name: str) -> NotEnabled:
    """The error of an explicit ``load`` or ``unload`` of ``name``, saying what to do instead (400 first
    for a name longer than any model's: it is echoed)."""
    dataplane.limits.check_name("model", name)
    interval = dataplane.poll_interval_s
    when = (
        f"the server looks at the repository every {interval:g} s (SERVING_POLL_INTERVAL_S)"
        if interval > 0
        else "the repository is read at start only (SERVING_POLL_INTERVAL_S=0): restart the server"
    )
    return NotEnabled(
        f"explicit model {action} is not enabled: the server serves what its model repository holds, "
        f"as Triton's poll mode does; to {action} {name!r}, add or remove a version directory "
        f"<repository>/{name}/<version>/ or change its serving.yaml version policy; {when}"
    )
