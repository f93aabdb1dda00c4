"""What the tuner varies: one server configuration (:class:`Candidate`), the stages of the search, and
the precision/runtime variants that exist for a model version.

Server-wide values (workers, ONNX Runtime intra-op threads) reach the server as ``SERVING_*``
variables; per-model values (batching, runtime, precision) as its entry in the repository's
``serving.yaml``. A variant is swept only when the checkout's ``serving.yaml`` schema accepts it
(:class:`service.models.config.ModelPolicy`) and the model version has it.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.models.config import ModelPolicy
from service.settings import Settings


@dataclass(frozen=True)
class Candidate:
    """One configuration of the server for the tuned model."""

    workers: int = 2
    onnx_threads: int = 1
    max_batch_size: int = Settings.model_fields["max_batch_size"].default  # the server's default
    max_wait_ms: float = 0.0
    runtime: str = "onnx"
    precision: str | None = None  # None: the model's default artifact (fp32); the key is left out

    @property
    def key(self) -> str:
        """A short unique name, also the name of its work folder."""
        return (f"w{self.workers}-t{self.onnx_threads}-b{self.max_batch_size}-wait{self.max_wait_ms:g}"
                f"-{self.runtime}-{self.precision or 'fp32'}")  # fmt: skip

    def policy(self) -> dict[str, Any]:
        """The model's ``serving.yaml`` entry."""
        entry: dict[str, Any] = {"runtime": self.runtime, "max_batch_size": self.max_batch_size,
                                 "max_wait_ms": self.max_wait_ms}  # fmt: skip
        if self.precision is not None:
            entry["precision"] = self.precision
        return entry

    def env(self) -> dict[str, str]:
        """The server-wide settings, as the server reads them."""
        return {"SERVING_WORKERS": str(self.workers), "SERVING_ONNX_THREADS": str(self.onnx_threads)}

    def with_(self, **changes: Any) -> Candidate:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Axes:
    """The values each stage tries; the first value of each axis is the server's default."""

    workers_threads: tuple[tuple[int, int], ...]
    batch_sizes: tuple[int, ...]
    waits_ms: tuple[float, ...]
    concurrency: tuple[int, ...]


def default_axes(scenario: str, quick: bool) -> Axes:
    """Sizes that suit this 2-core machine; a V2 binary request already carries 64 images."""
    binary = scenario == "v2-binary"
    if quick:
        return Axes(((2, 1), (1, 2)), (64, 256) if binary else (64, 16), (0.0, 1.0),
                    (2, 8) if binary else (4, 16, 64))  # fmt: skip
    return Axes(
        ((2, 1), (1, 1), (1, 2), (2, 2)),
        (64, 128, 256, 512) if binary else (64, 16, 32, 128),
        (0.0, 0.5, 1.0, 2.0),
        (1, 4, 16, 32) if binary else (4, 16, 64, 128),
    )


def accepts(**entry: Any) -> bool:
    """Whether this checkout's ``serving.yaml`` schema takes ``entry`` for a model."""
    try:
        ModelPolicy.model_validate(entry)
    except ValidationError:
        return False
    return True


def _listed_precisions(meta: dict[str, Any], version_dir: Path) -> set[str]:
    """Precision files ``metadata.json``'s ``variants`` lists as exported (``{"int8": {"exported": true,
    "file": "model.int8.onnx", ...}}``; a variant the accuracy gate refused has ``exported: false``)."""
    variants = meta.get("variants")
    if not isinstance(variants, dict):
        return set()
    found = set()
    for name, v in variants.items():
        info = v if isinstance(v, dict) else {}
        if info.get("exported", True) and (version_dir / info.get("file", f"model.{name}.onnx")).is_file():
            found.add(str(name))
    return found


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # ImportError, or a broken install that fails while importing
        return False
    return True


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """AVX-512 BF16 or AMX-BF16: without either, OpenVINO's bf16 hint runs fp32."""
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def discover_variants(
    version_dir: Path, bf16: bool | None = None
) -> tuple[list[tuple[str, str | None]], list[str]]:
    """((runtime, precision) pairs to sweep besides the fp32 ONNX baseline, notes on what is skipped).

    Files: ``model.<precision>.onnx`` (``int8``) present and, where ``metadata.json`` lists the variant,
    exported. ONNX Runtime runs the files; OpenVINO (when it imports) runs fp32, the files, and bf16 where
    the CPU has bf16 (``bf16``: None = read /proc/cpuinfo).
    """
    meta = json.loads((version_dir / "metadata.json").read_text())
    listed = meta.get("variants") if isinstance(meta.get("variants"), dict) else {}
    files = {p for p in ("int8", "fp16") if (version_dir / f"model.{p}.onnx").is_file() and p not in listed}
    found = sorted(_listed_precisions(meta, version_dir) | files)
    notes = [f"variant {k} not exported: {v.get('reason', 'see metadata.json')}" for k, v in listed.items()
             if isinstance(v, dict) and not v.get("exported", True)]  # fmt: skip
    if "precision" not in ModelPolicy.model_fields:
        notes.append("serving.yaml has no `precision` key in this checkout: precision variants not swept")
        found = []
    elif not found:
        notes.append(f"no precision variant file in {version_dir} (model.<precision>.onnx): fp32 only")
    pairs: list[tuple[str, str | None]] = [("onnx", p) for p in found if accepts(runtime="onnx", precision=p)]
    if not accepts(runtime="openvino"):
        notes.append("serving.yaml does not accept runtime: openvino in this checkout: runtime not swept")
        return pairs, notes
    if not _importable("openvino"):
        notes.append("openvino is not installed (pip install openvino): runtime dimension skipped")
        return pairs, notes
    if not _importable("service.runtimes.openvino"):
        notes.append("service.runtimes.openvino does not import in this checkout: runtime dimension skipped")
        return pairs, notes
    pairs.append(("openvino", None))
    pairs += [("openvino", p) for p in found if accepts(runtime="openvino", precision=p)]
    if not (cpu_has_bf16() if bf16 is None else bf16):
        notes.append("this CPU has no bf16 (avx512_bf16/amx_bf16): OpenVINO bf16 would run fp32; not swept")
    elif accepts(runtime="openvino", precision="bf16"):
        pairs.append(("openvino", "bf16"))
    return pairs, notes


STAGES = ("workers x threads", "max_batch_size", "max_wait_ms", "precision/runtime")


def stage_candidates(
    stage: str, incumbent: Candidate, axes: Axes, variants: list[tuple[str, str | None]]
) -> list[Candidate]:
    """The configurations one stage of the coordinate descent tries around the best one so far."""
    if stage == "workers x threads":
        return [incumbent.with_(workers=w, onnx_threads=t) for w, t in axes.workers_threads]
    if stage == "max_batch_size":
        return [incumbent.with_(max_batch_size=b) for b in axes.batch_sizes]
    if stage == "max_wait_ms":
        return [incumbent.with_(max_wait_ms=w) for w in axes.waits_ms]
    if stage == "precision/runtime":
        base = incumbent.with_(runtime="onnx", precision=None)
        return [base, *(base.with_(runtime=r, precision=p) for r, p in variants)]
    raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
