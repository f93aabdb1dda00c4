"""Our servers side by side on one machine, driven by wrk in rotating turns (the cost benchmarks).

Shared by :mod:`bench.tracing_cost`, :mod:`bench.ops_cost` and :mod:`bench.off_cost`: each mode is one of
our servers with its own environment (and repository); :func:`run_rounds` measures every mode once per round, the order
rotating each round so a drift of the shared machine hits every mode alike, and :func:`report` prints
the medians and each mode's change against the first. Beside req/s each run records the server's CPU time
per answered request (every process of its tree, user + system): on a shared 2-core machine throughput
swings by tens of percent between runs of one mode, CPU per request far less, so a cost shows there first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.bodies import ModelInfo, find_model, write_scenarios
from bench.config import ROOT, Scenario
from bench.procs import ServerProcess, answered, free_port
from bench.servers import PROJECT_BIN
from bench.synthetic import write_synthetic_cnn
from bench.wrk import WrkResult, run_wrk, write_script, wrk_available

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


def start_server(
    repo: Path, work: Path, workers: int, code: Path = ROOT, **env: str
) -> tuple[ServerProcess, str]:
    """One of our servers (gRPC off) over ``repo``, with ``env`` on top of this process's environment;
    ``code`` is the source tree it runs (its working directory and first on ``PYTHONPATH``, ahead of the
    project venv's editable install of this tree)."""
    port = free_port()
    full = {**os.environ, "SERVING_REPOSITORY": str(repo), "SERVING_PORT": str(port),
            "SERVING_WORKERS": str(workers), "SERVING_GRPC_TFSERVING_PORT": "0", "SERVING_GRPC_V2_PORT": "0",
            "BENTOML_HOME": str(work / "bentoml-home"), "PYTHONUNBUFFERED": "1", **env}  # fmt: skip
    if code != ROOT:
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), full.get("PYTHONPATH")]))
    cmd = [str(PROJECT_BIN / "bentoml"), "serve", "service.service:ModelServer", "--host", "127.0.0.1",
           "--port", str(port)]  # fmt: skip
    return ServerProcess(cmd, full, code, work / "server.log").start(), f"http://127.0.0.1:{port}"


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


def setup(a: argparse.Namespace, prefix: str) -> tuple[Path, ModelInfo, Scenario, Path] | None:
    """A fresh work folder, the model of ``a.repo``/``a.model`` (else the synthetic CNN), its single-image
    native JSON scenario and wrk script; ``None`` (said on stderr) when wrk is missing."""
    if not wrk_available():
        print("wrk and taskset are needed (apt-get install wrk)", file=sys.stderr)
        return None
    work = Path(tempfile.mkdtemp(prefix=prefix))
    return (work, *native_json(a.repo, a.model, work))


def stop_all(servers: Servers) -> None:
    for proc, _ in servers.values():
        proc.stop()


def save_json(
    path: Path, a: argparse.Namespace, medians: dict[str, dict[str, float]], runs: dict[str, list[Run]],
    **extra: object,
) -> None:  # fmt: skip
    """The arguments, medians and every run (plus ``extra``) as one JSON document at ``path``."""
    doc = {"args": {k: str(v) for k, v in vars(a).items()}, "medians": medians,
           "runs": {m: [r.as_dict() for r in rs] for m, rs in runs.items()}, **extra}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))


def wait_all(servers: Servers, scenario: Scenario, timeout_s: float = 180) -> None:
    """Every server ready and answering the scenario's request with 200."""
    for proc, url in servers.values():
        proc.wait_ready(url + "/readyz", timeout_s)
        status, body = answered(url + scenario.path, scenario.body_file.read_bytes(), scenario.headers)
        assert status == 200, body[:300]


@dataclass
class Run:
    """One measured wrk run against one mode, with the server's CPU time over it."""

    wrk: WrkResult
    server_cpu_s: float

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.server_cpu_s / max(self.wrk.requests, 1)

    def as_dict(self) -> dict[str, float | int]:
        return {**self.wrk.as_dict(), "server_cpu_s": self.server_cpu_s,
                "cpu_us_per_request": self.cpu_us_per_request}  # fmt: skip


def tree_cpu_s(proc: ServerProcess) -> dict[int, float]:
    """User + system CPU seconds of every live process of the server, by pid."""
    seconds: dict[int, float] = {}
    for p in proc.tree():
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        seconds[p.pid] = t.user + t.system
    return seconds


def measured(proc: ServerProcess, url: str, script: Path, concurrency: int, duration_s: float) -> Run:
    """One wrk run with the server's CPU time over it (processes alive at both ends)."""
    before = tree_cpu_s(proc)
    result = run_wrk(url, script, concurrency, 1, duration_s)
    after = tree_cpu_s(proc)
    return Run(result, sum(after[pid] - before[pid] for pid in after if pid in before))


def run_rounds(
    servers: Servers, scenario: Scenario, script: Path, rounds: int, concurrency: int, duration_s: float,
    warmup_s: float,
) -> dict[str, list[Run]]:  # fmt: skip
    """``rounds`` wrk runs per mode, in rotating order; each run printed as it ends."""
    modes = list(servers)
    runs: dict[str, list[Run]] = {mode: [] for mode in modes}
    for i in range(rounds):
        for mode in modes[i % len(modes) :] + modes[: i % len(modes)]:
            proc, base = servers[mode]
            url = base + scenario.path
            run_wrk(url, script, concurrency, 1, warmup_s)
            run = measured(proc, url, script, concurrency, duration_s)
            runs[mode].append(run)
            result = run.wrk
            print(f"round {i + 1} {mode:>9}: {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                  f"p99 {result.p99_ms:6.2f} ms  server CPU {run.cpu_us_per_request:5.0f} us/request  "
                  f"errors {result.non2xx + result.socket_errors}", flush=True)  # fmt: skip
    return runs


def summary(runs: list[Run]) -> dict[str, float]:
    rps = [r.wrk.rps for r in runs]
    p99 = [r.wrk.p99_ms for r in runs]
    cpu = [r.cpu_us_per_request for r in runs]
    return {"rps_median": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
            "p99_ms_median": statistics.median(p99), "p99_ms_min": min(p99), "p99_ms_max": max(p99),
            "cpu_us_median": statistics.median(cpu), "cpu_us_min": min(cpu), "cpu_us_max": max(cpu)}  # fmt: skip


def report(runs: dict[str, list[Run]]) -> dict[str, dict[str, float]]:
    """Print each mode's median and spread, and every mode's change in median req/s and in median server
    CPU per request against the first, and the median of its round-by-round ratios (the runs of one round
    are seconds apart, so a slow drift of the machine cancels out of them)."""
    medians = {mode: summary(r) for mode, r in runs.items()}
    for mode, m in medians.items():
        print(f"{mode:>9}: median {m['rps_median']:.0f} req/s ({m['rps_min']:.0f}-{m['rps_max']:.0f}), "
              f"p99 {m['p99_ms_median']:.2f} ms ({m['p99_ms_min']:.2f}-{m['p99_ms_max']:.2f}), "
              f"server CPU {m['cpu_us_median']:.0f} us/request ({m['cpu_us_min']:.0f}-{m['cpu_us_max']:.0f})")  # fmt: skip
    base, *others = list(medians)
    for mode in others:
        m, b = medians[mode], medians[base]
        m["change"] = m["rps_median"] / b["rps_median"] - 1
        m["cpu_change"] = m["cpu_us_median"] / b["cpu_us_median"] - 1
        pairs = list(zip(runs[mode], runs[base], strict=True))
        m["paired_change"] = statistics.median(r.wrk.rps / q.wrk.rps for r, q in pairs) - 1
        m["paired_cpu_change"] = (
            statistics.median(r.cpu_us_per_request / q.cpu_us_per_request for r, q in pairs) - 1
        )
        print(f"{mode} vs {base}: {100 * m['change']:+.1f} % req/s, {100 * m['cpu_change']:+.1f} % server "
              f"CPU per request (medians); round by round: median {100 * m['paired_change']:+.1f} % req/s, "
              f"{100 * m['paired_cpu_change']:+.1f} % CPU per request")  # fmt: skip
    return medians


def errors(runs: dict[str, list[Run]]) -> int:
    return sum(r.wrk.non2xx + r.wrk.socket_errors for rs in runs.values() for r in rs)
