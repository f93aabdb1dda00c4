"""Drive one server: start it, check every scenario answers 200, warm up, measure each concurrency, stop it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import promhist, venvs
from bench.bodies import ModelInfo
from bench.config import BenchConfig, Scenario
from bench.procs import answered
from bench.sampler import Sampler
from bench.servers import Launch, ServerSpec
from bench.wrk import run_wrk, write_script

Log = Callable[[str], None]


def _check(launch: Launch, scenario: Scenario) -> None:
    """One test request must answer 200 (a worker still loading, 503, is waited for)."""
    status, answer = answered(launch.url + scenario.path, scenario.body_file.read_bytes(), scenario.headers)
    if status != 200:
        raise venvs.Unavailable(f"{scenario.name}: a test request answered {status}: {answer[:300]!r}")


def _idle_rss(launch: Launch) -> dict[str, float]:
    from bench.sampler import label

    out = {}
    for p in launch.process.tree():
        with contextlib.suppress(Exception):
            out[f"{label(p)}:{p.pid}"] = round(p.memory_info().rss / 2**20, 1)
    return out


def measure_point(
    launch: Launch,
    scenario: Scenario,
    script: Path,
    connections: int,
    cfg: BenchConfig,
    histogram: bool = False,
) -> dict[str, Any]:
    """Warm up, then one measured wrk run at ``connections`` with process sampling (and /metrics at c=1)."""
    url = launch.url + scenario.path
    threads = cfg.threads_for(connections)
    if cfg.warmup_s > 0:
        run_wrk(url, script, connections, threads, cfg.warmup_s, cfg.client_cpu)
    read_hist = histogram and scenario.metrics_protocol is not None and connections == 1
    before = promhist.read_buckets(launch.url, cfg.model, scenario.metrics_protocol) if read_hist else None
    codes0 = promhist.read_codes(launch.url, cfg.model) if histogram else {}
    sampler = Sampler(launch.process.tree, launch.port)
    sampler.start()
    w = run_wrk(url, script, connections, threads, cfg.duration_s, cfg.client_cpu)
    sampled = sampler.stop(client_cpu_s=w.client_cpu_pct * w.duration_s / 100)
    point: dict[str, Any] = {
        "scenario": scenario.name,
        "images_per_request": scenario.images_per_request,
        **w.as_dict(),
        "images_per_s": w.rps * scenario.images_per_request,
        **sampled,
        "load1_after": round(os.getloadavg()[0], 2),
    }
    if histogram:  # the server's own count of answers by status code during the run
        codes = promhist.diff(promhist.read_codes(launch.url, cfg.model), codes0)
        point["server_codes"] = {k: int(v) for k, v in codes.items() if v}
    if before is not None:
        after = promhist.read_buckets(launch.url, cfg.model, scenario.metrics_protocol)
        point["server_side"] = promhist.server_side_ms(before, after)
    return point


def run_server(
    spec: ServerSpec,
    model: ModelInfo,
    scenarios: dict[str, Scenario],
    cfg: BenchConfig,
    work: Path,
    log: Log,
    after_points: Callable[[Launch, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every scenario × concurrency of one server; a server that cannot run is recorded with the reason."""
    result: dict[str, Any] = {"server": spec.name, "description": spec.description, "status": "ok",
                              "points": [], "load1_before": round(os.getloadavg()[0], 2)}  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        launch = spec.launch(model, cfg, work)
    except venvs.Unavailable as e:
        log(f"{spec.name}: unavailable: {e}")
        return {**result, "status": "unavailable", "reason": str(e)}
    try:
        launch.process.wait_ready(launch.url + launch.ready_path, cfg.start_timeout_s)
        result["start_s"] = round(time.monotonic() - t0, 1)
        for name in spec.scenarios:
            _check(launch, scenarios[name])
        result["idle_rss_mb"] = _idle_rss(launch)
        for name in spec.scenarios:
            script = write_script(scenarios[name], work)
            for c in cfg.concurrency:
                point = measure_point(launch, scenarios[name], script, c, cfg, spec.serving_metrics)
                result["points"].append(point)
                cpu = ", ".join(f"{p['name']} {p['cpu_pct']:.0f}%/{p['connections']}c" for p in point["processes"]
                                if p["cpu_pct"] >= 1 or p["connections"])  # fmt: skip
                log(f"{spec.name:14s} {name:16s} c={c:<3d} {point['rps']:9.1f} req/s  p50 {point['p50_ms']:7.2f} ms"
                    f"  p99 {point['p99_ms']:7.2f} ms  non2xx {point['non2xx']}  [{cpu}]")  # fmt: skip
        if after_points is not None:
            after_points(launch, result)
    except venvs.Unavailable as e:
        log(f"{spec.name}: cannot run: {e}")
        result.update(status="unavailable", reason=str(e))
    except Exception as e:  # a peer that fails to start or breaks under load is recorded, not fatal
        log(f"{spec.name}: failed: {e}")
        result.update(status="failed", reason=f"{type(e).__name__}: {e}"[-2000:])
    finally:
        launch.process.stop()
    return result
