"""Our servers side by side on one machine, driven by wrk in rotating turns (the cost benchmarks).

Shared by :mod:`bench.tracing_cost` and :mod:`bench.ops_cost`: each mode is one of our servers with its
own environment (and repository); :func:`run_rounds` measures every mode once per round, the order
rotating each round so a drift of the shared machine hits every mode alike, and :func:`report` prints
the medians and each mode's change against the first.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from bench.bodies import ModelInfo, find_model, write_scenarios
from bench.config import ROOT, Scenario
from bench.procs import ServerProcess, free_port, http
from bench.servers import PROJECT_BIN
from bench.synthetic import write_synthetic_cnn
from bench.wrk import WrkResult, run_wrk, write_script

Servers = dict[str, tuple[ServerProcess, str]]
"""Mode name -> (its server process, its base URL), the first mode the baseline."""


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The arguments every cost benchmark takes: the model, the wrk load, rounds and workers."""
    ap = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n")[0])
    ap.add_argument(
        "--repo", type=Path, default=ROOT / "models", help="repository with the CNN (else synthetic)"
    )
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--concurrency", type=int, default=16, help="wrk connections")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each run")
    ap.add_argument("--rounds", type=int, default=3, help="runs per mode (alternating)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes per server")
    return ap


def start_server(repo: Path, work: Path, workers: int, **env: str) -> tuple[ServerProcess, str]:
    """One of our servers (gRPC off) over ``repo``, with ``env`` on top of this process's environment."""
    port = free_port()
    full = {**os.environ, "SERVING_REPOSITORY": str(repo), "SERVING_PORT": str(port),
            "SERVING_WORKERS": str(workers), "SERVING_GRPC_TFSERVING_PORT": "0", "SERVING_GRPC_V2_PORT": "0",
            "BENTOML_HOME": str(work / "bentoml-home"), "PYTHONUNBUFFERED": "1", **env}  # fmt: skip
    cmd = [str(PROJECT_BIN / "bentoml"), "serve", "service.service:ModelServer", "--host", "127.0.0.1",
           "--port", str(port)]  # fmt: skip
    return ServerProcess(cmd, full, ROOT, work / "server.log").start(), f"http://127.0.0.1:{port}"


def native_json(repo: Path, name: str, work: Path) -> tuple[ModelInfo, Scenario, Path]:
    """The model ``name`` of ``repo`` (else the synthetic CNN, written under ``work``), its single-image
    native JSON scenario and that scenario's wrk script."""
    try:
        model = find_model(repo, name)
    except FileNotFoundError:
        write_synthetic_cnn(work / "repo", name)
        model = find_model(work / "repo", name)
    scenario = write_scenarios(model, work / "bodies")["native-json"]
    return model, scenario, write_script(scenario, work)


def wait_all(servers: Servers, scenario: Scenario, timeout_s: float = 180) -> None:
    """Every server ready and answering the scenario's request with 200."""
    for proc, url in servers.values():
        proc.wait_ready(url + "/readyz", timeout_s)
        status, body = http(url + scenario.path, scenario.body_file.read_bytes(), scenario.headers, 30)
        assert status == 200, body[:300]


def run_rounds(
    servers: Servers, scenario: Scenario, script: Path, rounds: int, concurrency: int, duration_s: float,
    warmup_s: float,
) -> dict[str, list[WrkResult]]:  # fmt: skip
    """``rounds`` wrk runs per mode, in rotating order; each run printed as it ends."""
    modes = list(servers)
    runs: dict[str, list[WrkResult]] = {mode: [] for mode in modes}
    for i in range(rounds):
        for mode in modes[i % len(modes) :] + modes[: i % len(modes)]:
            url = servers[mode][1] + scenario.path
            run_wrk(url, script, concurrency, 1, warmup_s)
            result = run_wrk(url, script, concurrency, 1, duration_s)
            runs[mode].append(result)
            print(f"round {i + 1} {mode:>9}: {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                  f"p99 {result.p99_ms:6.2f} ms  errors {result.non2xx + result.socket_errors}", flush=True)  # fmt: skip
    return runs


def summary(runs: list[WrkResult]) -> dict[str, float]:
    rps = [r.rps for r in runs]
    p99 = [r.p99_ms for r in runs]
    return {"rps_median": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
            "p99_ms_median": statistics.median(p99), "p99_ms_min": min(p99), "p99_ms_max": max(p99)}  # fmt: skip


def report(runs: dict[str, list[WrkResult]]) -> dict[str, dict[str, float]]:
    """Print each mode's median and spread, and every mode's change in median req/s against the first."""
    medians = {mode: summary(r) for mode, r in runs.items()}
    for mode, m in medians.items():
        print(f"{mode:>9}: median {m['rps_median']:.0f} req/s ({m['rps_min']:.0f}-{m['rps_max']:.0f}), "
              f"p99 {m['p99_ms_median']:.2f} ms ({m['p99_ms_min']:.2f}-{m['p99_ms_max']:.2f})")  # fmt: skip
    base, *others = list(medians)
    for mode in others:
        medians[mode]["change"] = medians[mode]["rps_median"] / medians[base]["rps_median"] - 1
        print(f"{mode} vs {base}: {100 * medians[mode]['change']:+.1f} % req/s (medians)")
    return medians


def errors(runs: dict[str, list[WrkResult]]) -> int:
    return sum(r.non2xx + r.socket_errors for rs in runs.values() for r in rs)
