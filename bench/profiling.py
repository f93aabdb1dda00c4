"""Where a server's CPU goes under load: ``py-spy record`` on each worker while wrk drives 64 connections.

The raw (collapsed) stacks are summarised two ways: by the leaf frame's library (self time), and by
the share of samples that pass through key layers (inclusive time).
"""

from __future__ import annotations

import collections
import subprocess
import threading
from pathlib import Path
from typing import Any

from bench import venvs
from bench.config import BenchConfig, Scenario
from bench.sampler import Sampler, label
from bench.servers import Launch
from bench.wrk import run_wrk

# (substring of a frame, category); the first match wins.
CATEGORIES = (
    ("onnxruntime", "ONNX Runtime"),
    ("orjson", "JSON"),
    ("/json/", "JSON"),
    ("numpy", "numpy"),
    ("prometheus_client", "Prometheus client"),
    ("opentelemetry", "tracing (OpenTelemetry)"),
    ("bentoml", "BentoML"),
    ("starlette", "Starlette"),
    ("uvicorn", "uvicorn"),
    ("h11", "uvicorn"),
    ("httptools", "uvicorn"),
    ("(service/", "our service code"),
    ("asyncio", "asyncio"),
    ("uvloop", "asyncio"),
    ("threading", "threads"),
    ("concurrent/futures", "threads"),
    ("logging", "logging"),
)
LAYERS: dict[str, str | tuple[str, ...]] = {  # inclusive: a sample counts when a frame has a marker
    "ONNX Runtime session.run": "onnxruntime",
    "our service code (service/)": "(service/",
    # not plain "bentoml": the worker's main loop (_bentoml_impl/worker) is at the root of every stack
    "BentoML middleware": ("bentoml/_internal/server/http", "_bentoml_impl/server/app.py"),
    "Starlette": "starlette",
    "uvicorn HTTP protocol": "uvicorn",
    "OpenTelemetry": "opentelemetry",
    "Prometheus client": "prometheus_client",
    "JSON parsing and JSON→array (orjson, json, codecs)": "json",
    "garbage collection": "gc",
}


def categorize(frame: str) -> str:
    for marker, name in CATEGORIES:
        if marker in frame:
            return name
    return "other"


def summarize(raw: str, top: int = 12) -> dict[str, Any]:
    """Self-time categories, inclusive layers and the hottest leaf frames of collapsed stacks."""
    leaves: collections.Counter[str] = collections.Counter()
    cats: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        n = int(count_text)
        frames = stack.split(";")
        total += n
        leaves[frames[-1]] += n
        cats[categorize(frames[-1])] += n
        for name, marker in LAYERS.items():
            markers = (marker,) if isinstance(marker, str) else marker
            if any(m in f for f in frames for m in markers):
                layers[name] += n

    def pct(c: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)] if total else []

    return {"samples": total, "self_by_category": pct(cats), "inclusive_layers": pct(layers),
            "top_leaf_frames": pct(leaves)}  # fmt: skip


def profile_server(
    launch: Launch, scenario: Scenario, script: Path, cfg: BenchConfig, work: Path
) -> dict[str, Any]:
    """Record every worker of ``launch`` for ``cfg.profile_s`` seconds under 64 connections of ``scenario``."""
    try:
        pyspy = venvs.ensure("tools") / "py-spy"
    except venvs.Unavailable as e:
        return {"status": "unavailable", "reason": str(e)}
    work.mkdir(parents=True, exist_ok=True)
    procs = [
        p for p in launch.process.tree() if label(p).startswith("bentoml-worker")
    ] or launch.process.tree()
    load_s = cfg.profile_s + 3
    wrk_result: dict[str, Any] = {}

    def drive() -> None:
        w = run_wrk(launch.url + scenario.path, script, 64, cfg.threads_for(64), load_s, cfg.client_cpu)
        wrk_result.update(w.as_dict())

    driver = threading.Thread(target=drive)
    driver.start()
    threading.Event().wait(1.0)
    sampler = Sampler(launch.process.tree, launch.port)
    sampler.start()
    spies = []
    for p in procs:
        out = work / f"{scenario.name}-{label(p)}-{p.pid}.txt"
        cmd = [str(pyspy), "record", "--pid", str(p.pid), "--duration", f"{cfg.profile_s:.0f}", "--rate", "250",
               "--format", "raw", "--output", str(out), "--nonblocking"]  # fmt: skip
        spies.append((p, out, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    workers = []
    for p, out, spy in spies:
        _, err = spy.communicate(timeout=cfg.profile_s + 60)
        entry: dict[str, Any] = {"process": f"{label(p)}:{p.pid}", "raw_file": out.name}
        if spy.returncode == 0 and out.is_file():
            entry.update(summarize(out.read_text()))
        else:
            entry["error"] = err.decode(errors="replace")[-300:]
        workers.append(entry)
    sampled = sampler.stop()
    driver.join()
    return {"status": "ok", "scenario": scenario.name, "connections": 64, "seconds": cfg.profile_s,
            "wrk": wrk_result, "processes": sampled["processes"], "workers": workers}  # fmt: skip
