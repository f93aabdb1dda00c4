"""``python -m bench.soak`` (or ``python -m bench soak``): a long run of real traffic against our server.

Starts ``bentoml serve service.service:ModelServer`` (2 workers) over a model repository, warms it up,
then sends a fixed number of requests across every model and every protocol (native, TF Serving REST and
gRPC, KServe V2 REST JSON and binary, V2 gRPC) from a bounded number of client threads, checks every answer
against a reference, and samples each server process's RSS and open file descriptors. Criteria: every
request sent, zero errors and wrong answers, RSS growth after warm-up below ``--max-rss-growth-pct`` for
every process, fds at the end at most ``--fd-slack`` above those after warm-up, no process restarted.
The exit code is 1 when a criterion fails. Results: ``<out>/soak.json`` and ``<out>/soak.md``.

Examples::

    .venv/bin/python -m bench.soak                                   # 200,000 requests over models/
    .venv/bin/python -m bench.soak --requests 5000 --warmup 1000 --repo /tmp/repo --out /tmp/soak
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import soak_report
from bench.config import ROOT
from bench.procs import ServerProcess, free_port, http
from bench.soak_cases import KINDS, load_cases, schedule
from bench.soak_clients import Client
from bench.soak_load import run_phase
from bench.soak_monitor import CpuShare, Monitor, compare, snapshot


def log(msg: str) -> None:
    print(f"[soak {dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, default=ROOT / "models", help="model repository (default models/)")
    ap.add_argument("--models", help="comma list of models (default: every model in the repository)")
    ap.add_argument("--requests", type=int, default=200_000, help="measured requests (default 200,000)")
    ap.add_argument("--warmup", type=int, default=10_000, help="warm-up requests before the baseline")
    ap.add_argument("--clients", type=int, default=16, help="concurrent client threads (default 16)")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    ap.add_argument("--max-seconds", type=float, default=1800, help="time limit for the whole load")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between RSS/fd samples")
    ap.add_argument("--max-rss-growth-pct", type=float, default=10.0)
    ap.add_argument("--fd-slack", type=int, default=4, help="fds a process may gain after warm-up")
    ap.add_argument("--out", type=Path, help=f"results folder (default bench/results/{dt.date.today()}-soak)")
    a = ap.parse_args(argv)
    if a.requests < 1 or a.warmup < 0 or not 1 <= a.clients <= 256 or a.max_seconds <= 0:
        ap.error("need --requests >= 1, --warmup >= 0, 1 <= --clients <= 256, --max-seconds > 0")
    return a


def start_server(repo: Path, workers: int, work: Path) -> tuple[ServerProcess, int, str, str]:
    port, tf_port, v2_port = free_port(), free_port(), free_port()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SERVING_")}  # defaults only
    env = {**inherited, "SERVING_REPOSITORY": str(repo.resolve()), "SERVING_PORT": str(port),
           "SERVING_WORKERS": str(workers), "SERVING_GRPC_TFSERVING_PORT": str(tf_port),
           "SERVING_GRPC_V2_PORT": str(v2_port), "BENTOML_HOME": str(work / "bentoml-home"),
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    cmd = [str(Path(sys.executable).with_name("bentoml")), "serve", "service.service:ModelServer",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    server = ServerProcess(cmd, env, ROOT, work / "server.log").start()
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/readyz", timeout_s=120)
        deadline = time.monotonic() + 60  # /readyz is one worker's answer: wait for every worker
        while ready_workers(port) < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {ready_workers(port)} of {workers} workers ready: {server.log_tail()}"
                )
            time.sleep(0.25)
    except BaseException:
        server.stop()
        raise
    return server, port, f"127.0.0.1:{tf_port}", f"127.0.0.1:{v2_port}"


def ready_workers(port: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return 0.0
    return sum(s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples
               if s.name == "serving_worker_ready")  # fmt: skip


def run(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    cases = load_cases(a.repo, a.models.split(",") if a.models else None)
    jobs = schedule(cases)
    log(f"{len(cases)} cases ({', '.join(c.name for c in cases)}) x {len(KINDS)} kinds; starting the server")
    t_start = time.monotonic()
    server, port, tf_grpc, v2_grpc = start_server(a.repo, a.workers, work)
    doc: dict[str, Any] = {"started_s": round(time.monotonic() - t_start, 2)}
    try:
        doc["idle_before"] = snapshot(server.tree)
        clients = [Client("127.0.0.1", port, tf_grpc, v2_grpc) for _ in range(a.clients)]
        for c in clients:
            c.wait_grpc_ready(30)
        deadline = time.monotonic() + a.max_seconds
        log(f"server ready in {doc['started_s']} s; warm-up: {a.warmup:,} requests")
        warm = run_phase(clients, jobs, a.warmup, deadline)
        doc["warmup"] = warm.summary()
        doc["after_warmup"] = snapshot(server.tree)
        log(f"warm-up done ({warm.summary()['rps']:,} req/s); soak: {a.requests:,} requests")
        monitor = Monitor(server.tree, a.interval, log)
        monitor.start()
        cpu = CpuShare(server.tree)
        main = run_phase(clients, jobs, a.requests, deadline, start=a.warmup)
        doc["cpu"] = cpu.stop()
        doc["end"] = snapshot(server.tree)
        doc["series"] = monitor.stop()
        doc["soak"] = main.summary()
        doc["reconnects"] = sum(c.reconnects for c in clients)
        for c in clients:
            c.close()
        time.sleep(1.0)  # let the server close its side of the connections
        doc["idle_after"] = snapshot(server.tree)
    finally:
        server.stop()
    doc["processes"] = compare(
        doc["after_warmup"], doc["end"], doc["series"], a.max_rss_growth_pct, a.fd_slack
    )
    doc["criteria"] = criteria(doc, a)
    return doc


def criteria(doc: dict[str, Any], a: argparse.Namespace) -> list[dict[str, Any]]:
    s, w, procs = doc["soak"], doc["warmup"], doc["processes"]
    bad = s["errors"] + s["wrong"] + w["errors"] + w["wrong"]
    return [
        {"criterion": f"all {a.requests:,} requests sent within {a.max_seconds:.0f} s",
         "ok": s["sent"] == a.requests and not s["timed_out"], "value": f"{s['sent']:,}"},
        {"criterion": "zero errors and wrong answers (warm-up included)", "ok": bad == 0, "value": str(bad)},
        {"criterion": f"RSS growth after warm-up < {a.max_rss_growth_pct:g} % (every process)",
         "ok": all(p.get("rss_ok", False) for p in procs),
         "value": ", ".join(f"{p['process']} {p.get('rss_growth_pct', '?')} %" for p in procs)},
        {"criterion": f"open fds stable (end <= after warm-up + {a.fd_slack}, every process)",
         "ok": all(p.get("fds_ok", False) for p in procs),
         "value": ", ".join(f"{p['process']} {p.get('fds_warm', '?')}→{p.get('fds_end', '?')}" for p in procs)},
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    out = a.out or ROOT / "bench" / "results" / f"{dt.date.today()}-soak"
    args = argv if argv is not None else sys.argv[1:]
    head = {"command": shlex.join([Path(sys.executable).name, "-m", "bench.soak", *args]),
            "environment": soak_report.environment(a)}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        doc = {**head, **run(a, Path(tmp))}
    doc["environment"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    soak_report.write(doc, out)
    print(soak_report.table(doc))
    print(f"results: {out / 'soak.md'}")
    return 0 if all(c["ok"] for c in doc["criteria"]) else 1


if __name__ == "__main__":
    sys.exit(main())
