"""ONNX Runtime execution providers: which ones a session asks for, with which options, and what to do
when a configured one is missing.

Pure functions over provider names (no ONNX Runtime import here, so the factory stays framework-free):
:func:`choose` turns the configured order (TensorRT → CUDA → CPU by default) and the names the installed
build offers (``onnxruntime.get_available_providers()``) into the ``providers`` argument of an
``InferenceSession``, and :func:`check_in_use` compares it with what the session really took (ONNX
Runtime drops a provider whose libraries fail to load, with only a log line of its own). A missing
provider falls back with one warning per process and set of missing names, or fails the load when
``strict`` asks for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from service.runtimes.base import ArtifactError

log = logging.getLogger("service.runtimes")

TENSORRT = "TensorrtExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_INSTALL = "pip install '.[gpu]' and swap onnxruntime for onnxruntime-gpu (README, section GPU)"
ProviderSpec = str | tuple[str, dict[str, str]]
_warned: set[tuple[str, ...]] = set()


class ProviderError(ArtifactError):
    """The configured providers cannot be used as asked (unknown name, or missing while strict)."""


@dataclass(frozen=True)
class ProviderOptions:
    """How providers are chosen and configured, beyond their order."""

    strict: bool = False
    """Fail instead of falling back when a configured provider is missing."""
    tensorrt_cache_dir: Path | None = None
    """TensorRT engine cache root; the engines of one model version go in ``<root>/<model>/<version>/<precision>``."""
    tensorrt_fp16: bool = False


def tensorrt_options(cache: Path | None, fp16: bool) -> dict[str, str]:
    """TensorRT's provider options: FP16 engines or not, and an engine (and timing) cache in ``cache``."""
    options = {"trt_fp16_enable": str(fp16)}
    if cache is not None:
        options |= {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(cache),
        }
    return options


def engine_cache(options: ProviderOptions, model: str, version: int) -> Path | None:
    """This version's engine folder (``None`` without a cache root); engines of other precisions stay apart."""
    if options.tensorrt_cache_dir is None:
        return None
    precision = "fp16" if options.tensorrt_fp16 else "fp32"
    return options.tensorrt_cache_dir / model / str(version) / precision


def choose(
    wanted: list[str],
    available: list[str],
    known: list[str],
    options: ProviderOptions,
    cache: Path | None = None,
    where: str = "",
) -> list[ProviderSpec]:
    """The providers to ask ONNX Runtime for, best first, CPU always last.

    ``known``: every provider name of this ONNX Runtime version (``get_all_providers()``), to tell a typo
    from a provider this build lacks. ``cache``: TensorRT's engine folder (:func:`engine_cache`).
    ``where`` names the model version in messages.
    """
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise ProviderError(f"unknown ONNX Runtime provider(s) {unknown}{where}; known names: {known}")
    missing = [p for p in wanted if p not in available]
    chosen = [p for p in wanted if p in available]
    if CPU not in chosen:
        chosen.append(CPU)  # ONNX Runtime falls back to CPU anyway; say so in the list
    if missing:
        _missing(missing, available, chosen[0], options.strict, where)
    return [(p, tensorrt_options(cache, options.tensorrt_fp16)) if p == TENSORRT else p for p in chosen]


def check_in_use(
    asked: list[ProviderSpec], in_use: list[str], options: ProviderOptions, where: str = ""
) -> None:
    """Compare the providers asked for with the session's own list: one it dropped counts as missing."""
    names = [provider_name(spec) for spec in asked]
    dropped = [p for p in names if p not in in_use]
    if dropped:
        _missing(dropped, in_use, in_use[0] if in_use else CPU, options.strict, where, failed_to_start=True)


def _missing(
    missing: list[str],
    available: list[str],
    fallback: str,
    strict: bool,
    where: str,
    failed_to_start: bool = False,
) -> None:
    why = "failed to start (see ONNX Runtime's log above)" if failed_to_start else "not available"
    detail = f"ONNX Runtime provider(s) {', '.join(missing)} {why}{where}; this build offers {available}"
    if strict:
        raise ProviderError(
            f"{detail}, and onnx_strict_providers is set: {GPU_INSTALL}, or unset onnx_strict_providers "
            f"to fall back to {fallback}"
        )
    key = (*missing, fallback)
    if key not in _warned:  # once per process: every version of every model would say the same
        _warned.add(key)
        log.warning("%s: falling back to %s (logged once per process)", detail, fallback)


def provider_name(spec: ProviderSpec) -> str:
    """The name of an entry of :func:`choose`'s list."""
    return spec if isinstance(spec, str) else spec[0]
