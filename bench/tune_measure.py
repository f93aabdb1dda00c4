"""Measure one configuration for real: a repository whose ``serving.yaml`` holds it, a fresh server with
its ``SERVING_*`` values, a check that the server runs what was asked, then wrk at rising client counts.

The repository is a temporary folder with the tuned version symlinked in and its own ``serving.yaml``;
the server is started like the main benchmark's (:func:`bench.servers.launch_ours`) with every
``SERVING_*`` variable of the calling shell removed, so only the configuration under test applies.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import promhist
from bench.bodies import ModelInfo
from bench.config import BenchConfig, Scenario
from bench.procs import http
from bench.runner import measure_point
from bench.servers import Launch, launch_ours
from bench.tune_search import Result, errors, meets
from bench.tune_space import Candidate
from service.metrics import BATCH_BUCKETS
from service.models.config import CONFIG_FILE, load_config


class NotApplied(RuntimeError):
    """The server does not run the configuration that was asked for."""


@dataclass(frozen=True)
class Setup:
    """What stays the same for every configuration of one tuning run."""

    model: ModelInfo
    scenario: Scenario
    script: Path  # wrk's Lua script for the scenario
    concurrency: tuple[int, ...]
    warmup_s: float
    duration_s: float
    budget_ms: float
    work: Path
    log: Callable[[str], None]


def write_repo(folder: Path, model: ModelInfo, cand: Candidate) -> Path:
    """``folder/repo`` with the model version symlinked in and ``serving.yaml`` holding ``cand``."""
    repo = folder / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / model.name).mkdir(parents=True)
    (repo / model.name / str(model.version)).symlink_to(model.onnx_path.parent, target_is_directory=True)
    text = yaml.safe_dump({"models": {model.name: cand.policy()}}, sort_keys=False)
    (repo / CONFIG_FILE).write_text(text)
    load_config(repo)  # the server's own parser: raises ConfigError if the schema refuses the entry
    return repo


@contextlib.contextmanager
def serving_env(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` without the caller's ``SERVING_*`` variables and with ``values``, while a server starts."""
    saved = dict(os.environ)
    for k in [k for k in os.environ if k.startswith("SERVING_")]:
        del os.environ[k]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check_batches(buckets: dict[float, float], rows_sum: float, max_batch_size: int) -> dict[str, Any]:
    """The largest runtime call's bucket must not be above the bucket holding ``max_batch_size``."""
    count = buckets.get(math.inf, 0.0)
    if count <= 0:
        raise NotApplied("no batch was recorded in serving_batch_size")
    largest = min(le for le, c in buckets.items() if c >= count)
    allowed = min((b for b in BATCH_BUCKETS if b >= max_batch_size), default=math.inf)
    if largest > allowed:
        raise NotApplied(
            f"batches of up to {largest:g} rows ran; max_batch_size {max_batch_size} did not apply"
        )
    return {"calls": int(count), "mean_rows": round(rows_sum / count, 2), "largest_bucket": largest}


def running_precision(provider: str) -> str:
    """The precision a provider text names (``CPUExecutionProvider int8``, ``OpenVINO CPU bf16``); fp32 if none."""
    last = provider.rsplit(" ", 1)[-1]
    return last if last in ("int8", "bf16", "fp16") else "fp32"


def verify(launch: Launch, model: ModelInfo, cand: Candidate) -> dict[str, Any]:
    """What the server reports it runs (``/v1/models``, ``serving_worker_ready``), compared with ``cand``."""
    from bench.soak import ready_workers

    status, body = http(launch.url + "/v1/models", timeout=10.0)
    if status != 200:
        raise NotApplied(f"/v1/models answered {status}: {body[:200]!r}")
    entry = next((m for m in json.loads(body)["models"] if m["name"] == model.name), None)
    version = next((v for v in (entry or {}).get("versions", []) if v["version"] == model.version), None)
    if version is None:
        raise NotApplied(f"{model.name} v{model.version} is not served")
    seen = {"state": version["state"], "runtime": version["runtime"], "provider": version.get("provider"),
            "workers_ready": ready_workers(launch.port),
            "worker_threads": sorted(p.num_threads() for p in launch.process.tree()[1:])}  # fmt: skip
    problems = [f"state {seen['state']} ({version.get('error')})"] if seen["state"] != "ready" else []
    if seen["runtime"] != cand.runtime:
        problems.append(f"runtime {seen['runtime']} instead of {cand.runtime}")
    want = cand.precision or "fp32"
    shown = version.get("precision") or running_precision(seen["provider"] or "")
    seen["precision"] = shown
    if shown != want:
        problems.append(f"precision {shown} (provider {seen['provider']!r}) instead of {want}")
    if seen["workers_ready"] != cand.workers:
        problems.append(f"{seen['workers_ready']:g} workers ready instead of {cand.workers}")
    if problems:
        raise NotApplied("; ".join(problems))
    return seen


def _wait_workers(launch: Launch, workers: int, timeout_s: float = 60.0) -> None:
    from bench.soak import ready_workers

    deadline = time.monotonic() + timeout_s
    while ready_workers(launch.port) < workers and time.monotonic() < deadline:
        time.sleep(0.2)


def measure(cand: Candidate, stage: str, s: Setup) -> Result:
    """Start a server with ``cand``, verify it, run the client-count ladder (stopping once over budget)."""
    folder = s.work / cand.key
    result: Result = {"status": "ok", "points": [], "load1_before": round(os.getloadavg()[0], 2)}
    try:
        repo = write_repo(folder, s.model, cand)
    except Exception as e:
        return {**result, "status": "failed", "reason": f"serving.yaml refused: {e}"[:500]}
    cfg = BenchConfig(repo=repo, model=s.model.name, version=s.model.version, servers=("ours",),
                      concurrency=s.concurrency, duration_s=s.duration_s, warmup_s=s.warmup_s,
                      workers=cand.workers, ort_ceiling=False, profile=False, wait_quiet=False, out=folder)  # fmt: skip
    t0 = time.monotonic()
    with serving_env({**cand.env(), "SERVING_POLL_INTERVAL_S": "0"}):
        launch = launch_ours(s.model, cfg, folder)
    try:
        launch.process.wait_ready(launch.url + launch.ready_path, cfg.start_timeout_s)
        _wait_workers(launch, cand.workers)
        result["start_s"] = round(time.monotonic() - t0, 1)
        result["verified"] = verify(launch, s.model, cand)
        status, answer = http(
            launch.url + s.scenario.path, s.scenario.body_file.read_bytes(), s.scenario.headers, 30.0
        )
        if status != 200:  # fmt: skip
            raise NotApplied(f"a test request answered {status}: {answer[:300]!r}")
        for c in s.concurrency:
            p = measure_point(launch, s.scenario, s.script, c, cfg, histogram=True)
            p["errors"] = errors(p)
            result["points"].append(p)
            s.log(f"  {cand.key:38s} c={c:<4d} {p['images_per_s']:10,.0f}/s  p50 {p['p50_ms']:6.2f}  "
                  f"p99 {p['p99_ms']:7.2f} ms  errors {p['errors']}")  # fmt: skip
            if not meets(p, s.budget_ms):  # more clients in a closed loop only queue longer
                break
        result["batches"] = check_batches(
            *promhist.read_histogram(launch.url, s.model.name, "serving_batch_size"), cand.max_batch_size
        )
    except Exception as e:
        s.log(f"  {cand.key}: failed: {e}")
        result.update(status="failed", reason=f"{type(e).__name__}: {e}"[-1500:])
    finally:
        launch.process.stop()
    result["load1_after"] = round(os.getloadavg()[0], 2)
    return result
