"""``python -m bench precision``: accuracy and images/s per runtime and precision, one thread each.

For ONNX Runtime and OpenVINO, each at fp32 and int8 (and OpenVINO bf16 where the CPU has bf16), the
serving runtimes themselves (:func:`service.runtimes.factory.create_runtime`, ``onnx_threads`` 1) load one
version of the CNN; each gives its accuracy on the 10,000 held-out MNIST test images and its images/s at
batch 1 and 64. Throughput is measured in interleaved rounds (every configuration once per round, the
median of the rounds reported), so a neighbour's burst on a shared machine does not land on one row only.
Writes ``results.json`` and ``report.md`` (the table the README quotes) to ``bench/results/<date>-precision/``.
About two minutes with the defaults.

    .venv/bin/python -m bench precision --repo models --model cnn
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import config
from bench.bodies import find_model

BATCHES = (1, 64)
CONFIGS = (("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "int8"))


def log(msg: str) -> None:
    print(f"[precision {dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def cpu_description() -> dict[str, Any]:
    """The CPU's model name and the flags that decide what int8/bf16 can use."""
    info = Path("/proc/cpuinfo").read_text()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    return {"model": name, "flags": [f for f in wanted if f in flags]}


def images_per_s(predict: Any, feed: dict[str, np.ndarray], rows: int, seconds: float) -> tuple[float, float]:
    """Rows per second of back-to-back ``predict(feed)`` calls for ``seconds`` (median call time), and the
    share of the wall time this process had a CPU (well under 1: a neighbour took the core)."""
    times: list[float] = []
    started, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() < started + seconds:
        t = time.perf_counter()
        predict(feed)
        times.append(time.perf_counter() - t)
    share = (time.process_time() - cpu) / (time.perf_counter() - started)
    return rows / statistics.median(times), share


def measure(directory: Path, rounds: int, seconds: float) -> dict[str, Any]:
    """Load every configuration, compute its accuracy, then time the rounds."""
    import openvino as ov

    from service.runtimes.factory import create_runtime
    from service.runtimes.openvino import cpu_has_bf16
    from service.schema import ModelMetadata
    from training.data import load_mnist

    meta = ModelMetadata.model_validate_json((directory / "metadata.json").read_bytes())
    name, out = meta.inputs[0].name, meta.outputs[0].name
    test = load_mnist(limit_train=1)
    configs = list(CONFIGS) + ([("openvino", "bf16")] if cpu_has_bf16(ov.Core()) else [])
    rows: list[dict[str, Any]] = []
    runtimes = []
    for kind, precision in configs:
        runtime = create_runtime(kind, directory, meta, ["CPUExecutionProvider"], 1, precision=precision)
        runtime.load()
        preds = np.concatenate(
            [runtime.predict({name: test.x_test[i : i + 500]})[out] for i in range(0, len(test.x_test), 500)]
        )
        accuracy = float(np.mean(preds.argmax(axis=1) == test.y_test))
        rows.append({"runtime": kind, "precision": runtime.precision, "provider": runtime.provider,
                     "accuracy": accuracy, "test_images": len(test.x_test), "samples": {b: [] for b in BATCHES}, "cpu_share": []})  # fmt: skip
        runtimes.append(runtime)
        log(f"{kind} {precision}: {runtime.provider}, accuracy {accuracy:.4%}")
    feeds = {b: {name: test.x_test[:b]} for b in BATCHES}
    for r in range(rounds):
        for row, runtime in zip(rows, runtimes, strict=True):
            for b in BATCHES:
                for _ in range(20):  # warm caches for this shape
                    runtime.predict(feeds[b])
                rate, share = images_per_s(runtime.predict, feeds[b], b, seconds)
                row["samples"][b].append(rate)
                row["cpu_share"].append(share)
        log(f"round {r + 1}/{rounds} done")
    for row in rows:
        row["images_per_s"] = {b: statistics.median(v) for b, v in row["samples"].items()}
        row["cpu_share"] = round(min(row["cpu_share"]), 2)
    return {"model": {"name": meta.name, "version": meta.version, "directory": str(directory),
                      "variants": {k: v.model_dump() for k, v in meta.variants.items()}},
            "rows": rows}  # fmt: skip


def render(doc: dict[str, Any]) -> str:
    """The markdown report: the table, and how it was measured."""
    base = next(r for r in doc["rows"] if (r["runtime"], r["precision"]) == ("onnx", "fp32"))
    lines = [
        f"# Precision table, {doc['date']}",
        "",
        f"Model {doc['model']['name']} v{doc['model']['version']}; CPU {doc['cpu']['model']} "
        f"(flags: {', '.join(doc['cpu']['flags']) or 'none of interest'}); one intra-op thread; "
        f"{doc['rounds']} interleaved rounds of {doc['seconds']} s per point, median; "
        f"load average before: {doc['load_before']}, after: {doc['load_after']}; lowest CPU share of a "
        f"timed point (process CPU time / wall time; 1.00 = the core was ours): {doc['cpu_share']:.2f}.",
        "",
        "| runtime | precision | accuracy (10k test) | images/s, batch 1 | images/s, batch 64 | vs ORT fp32 (1 / 64) |",
        "|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        one, many = r["images_per_s"]["1"], r["images_per_s"]["64"]
        ratio = f"{one / base['images_per_s']['1']:.2f}x / {many / base['images_per_s']['64']:.2f}x"
        lines.append(
            f"| {r['runtime']} | {r['precision']} | {r['accuracy']:.2%} | {one:,.0f} | {many:,.0f} | {ratio} |"
        )
    if not doc["bf16"]:
        lines += ["", "No bf16 row: this CPU has no bf16 (OpenVINO's OPTIMIZATION_CAPABILITIES lacks BF16); "
                  "`precision: bf16` on the openvino runtime runs fp32 here, with a warning."]  # fmt: skip
    lines += ["", f"Command: `{doc['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench precision", description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, default=config.ROOT / "models")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--version", type=int, help="model version (default: the newest)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0, help="per point and round")
    ap.add_argument("--out", type=Path, help="default bench/results/<date>-precision")
    ap.add_argument("--no-wait-quiet", action="store_true", help="do not wait for a quiet machine first")
    a = ap.parse_args(argv)
    if not a.no_wait_quiet:
        from bench.procs import wait_quiet

        log(f"machine: {wait_quiet(config.BenchConfig.quiet_load, config.BenchConfig.quiet_timeout_s, log)}")
    info = find_model(a.repo, a.model, a.version)
    out = a.out or config.ROOT / "bench" / "results" / f"{dt.date.today().isoformat()}-precision"
    load_before = round(os.getloadavg()[0], 2)
    doc: dict[str, Any] = {"date": dt.date.today().isoformat(), "cpu": cpu_description(), "rounds": a.rounds,
                           "seconds": a.seconds, "load_before": load_before,
                           "command": " ".join(["python -m bench precision", *(argv if argv is not None else sys.argv[2:])])}  # fmt: skip
    doc.update(measure(info.onnx_path.parent, a.rounds, a.seconds))
    doc["load_after"] = round(os.getloadavg()[0], 2)
    doc["bf16"] = any(r["precision"] == "bf16" for r in doc["rows"])
    doc["cpu_share"] = min(r["cpu_share"] for r in doc["rows"])
    doc = json.loads(json.dumps(doc))  # batch keys become strings, as results.json has them
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    (out / "report.md").write_text(render(doc))
    print(render(doc))
    print(f"report: {out / 'report.md'}")
    return 0
