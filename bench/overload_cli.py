"""``python -m bench overload``: goodput and p99 from 0.5x to 4x saturation, ours beside the peers.

Every server runs pinned to core 0 with one worker (or one model instance), and the open-loop
generator (:mod:`bench.openloop`) runs pinned to core 1, so the generator can outrun the server. Loads:
single-image JSON for every server (its own request format), and 1,024-image V2 binary requests for the
servers that speak the binary extension (ours, PyTriton). PyTriton gets Triton's queue policy (reject
after ``max_queue_delay_ms``); ours uses its admission by expected queue delay with the same budget.
Writes ``overload.json``, ``overload.png`` and ``overload.md`` into the results folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench import overload, overload_report
from bench.bodies import (
    ModelInfo,
    find_model,
    naive_body,
    native_body,
    sample_images,
    v2_binary_body,
    v2_json_body,
)
from bench.config import ROOT, BenchConfig
from bench.openloop import Check, http_request
from bench.procs import ServerProcess
from bench.servers import SERVERS, Launch

SERVER_CPU, CLIENT_CPU = 0, 1
BIG = 1024  # images per V2 binary request
PATHS = {"ours": "/v1/predict", "naive-bentoml": "/predict"}
JSON = {"Content-Type": "application/json"}


def expected_outputs(model: ModelInfo, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model.onnx_path), providers=["CPUExecutionProvider"])
    return session.run([model.output_name], {model.input_name: x})[0]


def _close(got: Any, want: np.ndarray) -> bool:
    return np.allclose(np.asarray(got, np.float32).reshape(want.shape), want, rtol=1e-3, atol=1e-5)


def json_check(server: str, model: ModelInfo, want: np.ndarray) -> Check:
    """Whether a single-image JSON answer of ``server`` holds the expected probabilities."""

    def check(body: bytes) -> bool:
        try:
            doc = json.loads(body)
            if server == "ours":
                return _close(doc["outputs"][model.output_name], want)
            if server == "naive-bentoml":
                return _close(doc, want)
            return _close(doc["outputs"][0]["data"], want)
        except (ValueError, KeyError, IndexError, TypeError):
            return False

    return check


def binary_check(want: np.ndarray) -> Check:
    """Whether a V2 binary answer ends with the expected output bytes."""
    size = want.astype("<f4").nbytes

    def check(body: bytes) -> bool:
        return len(body) > size and _close(np.frombuffer(body[-size:], "<f4"), want)

    return check


def loads_for(server: str, model: ModelInfo) -> list[overload.Load]:
    one = sample_images(model, 1)
    want_one = expected_outputs(model, one)
    v2_path = f"/v2/models/{model.name}/infer"
    if server == "ours":
        body = native_body(model, one)
    elif server == "naive-bentoml":
        body = naive_body(one)
    else:
        body = v2_json_body(model, one)
    single = http_request(PATHS.get(server, v2_path), body, JSON)
    result = [overload.Load("json-x1", single, 1, json_check(server, model, want_one), 32)]
    if server in ("ours", "pytriton"):
        big = sample_images(model, BIG, seed=1)
        raw, header = v2_binary_body(model, big)
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(header)}
        check = binary_check(expected_outputs(model, big))
        result.append(overload.Load(f"v2-binary-x{BIG}", http_request(v2_path, raw, headers), BIG, check, 4))
    return result


def pin(process: ServerProcess, cpu: int) -> None:
    for p in process.tree():
        try:
            p.cpu_affinity([cpu])
        except Exception:  # exited meanwhile
            continue


def start(server: str, model: ModelInfo, cfg: BenchConfig, work: Path, queue_delay_ms: float) -> Launch:
    os.environ.update(
        SERVING_MAX_QUEUE_DELAY_MS=str(queue_delay_ms), SERVING_POLL_INTERVAL_S="0",
        BENCH_QUEUE_DELAY_MS=str(queue_delay_ms), BENCH_MAX_BATCH=str(BIG),
    )  # fmt: skip
    launch = SERVERS[server].launch(model, cfg, work)
    try:
        pin(launch.process, SERVER_CPU)
        launch.process.wait_ready(launch.url + launch.ready_path, cfg.start_timeout_s)
        pin(launch.process, SERVER_CPU)  # workers started after the first pass
    except BaseException:
        launch.process.stop()  # a server that never got ready is not left running
        raise
    return launch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench overload", description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, default=ROOT / "models")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--servers", default="ours,pytriton,mlserver,naive-bentoml")
    ap.add_argument("--multiples", default=",".join(str(m) for m in overload.MULTIPLES))
    ap.add_argument("--point-s", type=float, default=4.0, help="seconds of each open-loop burst")
    ap.add_argument(
        "--queue-delay-ms", type=float, default=200.0, help="the queue budget ours and PyTriton get"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / f"{dt.date.today()}-overload")
    args = ap.parse_args(argv)
    model = find_model(args.repo, args.model)
    cfg = BenchConfig(repo=args.repo, model=args.model, workers=1)
    args.out = args.out.resolve()  # the peers run in folders of their own: no path relative to here
    args.out.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, {CLIENT_CPU})
    multiples = [float(m) for m in args.multiples.split(",")]
    results: list[dict[str, Any]] = []
    for server in args.servers.split(","):
        work = args.out / "work" / server
        try:
            launch = start(server, model, cfg, work, args.queue_delay_ms)
        except Exception as exc:  # a peer that cannot start is reported, the others still run
            results.append({"server": server, "error": f"{type(exc).__name__}: {exc}"[:400]})
            print(f"[overload] {server}: not started: {exc}", file=sys.stderr)
            continue
        try:
            for load in loads_for(server, model):
                print(f"[overload] {server} / {load.name}", file=sys.stderr, flush=True)
                curve = overload.run(
                    "127.0.0.1", launch.port, load, multiples=multiples, point_s=args.point_s
                )
                results.append({"server": server, **curve})
        finally:
            launch.process.stop()
    doc = {"date": str(dt.date.today()), "model": f"{model.name} v{model.version}", "queue_delay_ms":
           args.queue_delay_ms, "point_s": args.point_s, "results": results}  # fmt: skip
    (args.out / "overload.json").write_text(json.dumps(doc, indent=1))
    overload_report.write(doc, args.out)
    print(overload_report.table(doc))
    return 0
