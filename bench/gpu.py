"""GPU check (issue 17): the service on the Keras/JAX runtime beside raw Keras-on-JAX, on the same device.

``bench/gpu.sh`` runs this module (``python -m bench.gpu``). In one run it

1. builds a model repository with the tutorial CNN (:func:`training.architectures.build_cnn`, built with
   Keras on JAX and random weights, or a carried ``.keras`` file: ``--keras``) as ``cnn`` version 1 on the
   ``keras`` runtime, ``max_batch_size`` = the largest batch measured;
2. measures raw ``model.predict_on_batch`` on JAX's default device at each batch size (64, 1,024, 8,192);
3. starts the service (``python -m bentoml serve``, one worker, gRPC off) and sends V2 binary requests
   of the same batches from ``--concurrency`` keep-alive clients, checking the first answer against raw
   Keras on the same images;
4. prints a table (images/s, p50/p99 per call, service/raw) and writes ``gpu.json`` into ``--out``.

The target of the issue: the service reaches >= 50 % of the raw images/s at batch 1,024 (reported, not
enforced). ``--quick`` runs small batches for a few seconds, on any device (the CPU test runs it).

**What it needs.** The project's tree (not installed: the server gets it on ``PYTHONPATH``), Python 3.11 or
3.12, JAX (with CUDA for a GPU) and the service's packages. The GPU machine has JAX, numpy, onnx, psutil,
grpcio, protobuf, prometheus-client and pyyaml but not bentoml, keras, pydantic(-settings), orjson, starlette,
uvicorn, httptools or tritonclient: ``bench/gpu.sh wheels`` downloads those (``bench/gpu_wheels.txt``,
44 wheels, ~17 MB) into ``.whl/`` where pip works, and ``bench/gpu.sh`` installs them there before running.
No TensorFlow is needed, and nothing is downloaded at run time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES, QUICK_SIZES = (64, 1024, 8192), (8, 32, 64)
TARGET_BATCH, TARGET_RATIO = 1024, 0.5
NEEDS = {"jax": "jax", "keras": "keras", "bentoml": "bentoml", "pydantic_settings": "pydantic-settings",
         "orjson": "orjson", "simdjson": "pysimdjson", "starlette": "starlette", "uvicorn": "uvicorn", "httptools": "httptools",
         "tritonclient": "tritonclient", "swagger_ui_bundle": "swagger-ui-bundle-v2", "psutil": "psutil",
         "onnx": "onnx", "yaml": "pyyaml", "prometheus_client": "prometheus-client", "grpc": "grpcio"}  # fmt: skip


def prepare_process() -> None:
    """Before Keras or JAX is imported: Keras on JAX, and no JAX preallocation (this process and the
    server's share one GPU). The server inherits both through its environment."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def save_without_tensorflow(model: Any, path: Path) -> None:
    """``model.save(path)`` as on the GPU machine: where TensorFlow is installed, Keras imports it (10 s,
    ~800 MB) just to write the file; with the import blocked for the call, Keras takes it as absent."""
    blocked = "tensorflow" not in sys.modules
    if blocked:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]
    try:
        model.save(path)
    finally:
        if blocked:
            del sys.modules["tensorflow"]  # Keras' layers test `"tensorflow" in sys.modules`


def missing_packages() -> list[str]:
    """The distributions of :data:`NEEDS` whose module cannot be found here."""
    return [dist for module, dist in NEEDS.items() if importlib.util.find_spec(module) is None]


def build_model(keras_file: Path | None, seed: int) -> Any:
    """The carried ``.keras`` file, or the tutorial CNN with random weights (Keras on JAX, no TensorFlow)."""
    import keras  # first, with KERAS_BACKEND=jax: training/__init__ would otherwise pick TensorFlow

    if keras_file is not None:
        return keras.saving.load_model(keras_file, compile=False, safe_mode=True)
    from training.architectures import build_cnn

    keras.utils.set_random_seed(seed)
    return build_cnn()


def write_repo(repo: Path, model: Any, max_batch: int, concurrency: int) -> Path:
    """``repo/cnn/1/{model.keras, metadata.json}`` and a ``serving.yaml`` that serves it on JAX."""
    from bench.synthetic import synthetic_metadata

    folder = repo / "cnn" / "1"
    folder.mkdir(parents=True)
    save_without_tensorflow(model, folder / "model.keras")
    digest = hashlib.sha256((folder / "model.keras").read_bytes()).hexdigest()
    metadata = synthetic_metadata(
        "cnn", 1, inputs=[{"name": "pixels", "dtype": "float32", "shape": [-1, 28, 28, 1]}],
        outputs=[{"name": "output_0", "dtype": "float32", "shape": [-1, 10]}],
        example={"pixels": np.zeros((1, 28, 28, 1)).tolist()}, labels=[str(i) for i in range(10)],
        input_contract="raw pixels 0-255", artifacts={"model.keras": digest},
    )  # fmt: skip
    (folder / "metadata.json").write_text(metadata.model_dump_json(indent=1))
    queue_rows = max_batch * (concurrency + 2)  # every client's request queued at once is no overload here
    (repo / "serving.yaml").write_text(
        "models:\n  cnn: {runtime: keras, "
        f"max_batch_size: {max_batch}, max_queue_rows: {queue_rows}, max_queue_delay_ms: 60000}}\n"
    )
    return folder


def server_env(repo: Path, port: int, work: Path, max_batch: int) -> dict[str, str]:
    body = max_batch * 28 * 28 * 4 + 65536
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "SERVING_REPOSITORY": str(repo), "SERVING_PORT": str(port), "SERVING_WORKERS": "1",
        "SERVING_RUNTIME": "keras", "SERVING_GRPC_TFSERVING_PORT": "0", "SERVING_GRPC_V2_PORT": "0",
        "SERVING_POLL_INTERVAL_S": "0", "SERVING_MAX_BODY_BYTES": str(2 * body),
        "SERVING_MAX_ELEMENTS": str(2 * max_batch * 28 * 28), "SERVING_MAX_ROWS": str(max(16384, max_batch)),
        "BENTOML_HOME": str(work / "bentoml-home"),
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    import jax

    from bench.bodies import ModelInfo, sample_images, v2_binary_body
    from bench.gpu_load import V2Client, decode_v2_binary, measure_raw, measure_service
    from bench.procs import ServerProcess, free_port, http
    from service.runtimes.keras import describe_device

    sizes = sorted(args.sizes or (QUICK_SIZES if args.quick else SIZES))
    seconds = args.seconds or (1.0 if args.quick else 8.0)
    device = describe_device(jax.devices()[0])
    print(f"device: {device}; batches {sizes}; {seconds} s per point; {args.concurrency} clients", flush=True)
    phases: dict[str, float] = {}
    clock = perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        phases[name], clock = round(perf_counter() - clock, 2), perf_counter()

    work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    model = build_model(args.keras, args.seed)
    write_repo(work / "repo", model, max(sizes), args.concurrency)
    info = ModelInfo("cnn", 1, Path(), "pixels", "output_0", (28, 28, 1))
    images = {n: sample_images(info, n, seed=n) for n in sizes}
    phase("build_s")
    points = [measure_raw(model, images[n], seconds).row() for n in sizes]
    phase("raw_s")
    port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "bentoml", "serve", "service.service:ModelServer", "--host", "127.0.0.1",
         "--port", str(port)], server_env(work / "repo", port, work, max(sizes)), ROOT, work / "server.log",
    ).start()  # fmt: skip
    checks: dict[str, Any] = {}
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/readyz", args.start_timeout)
        phase("server_start_s")
        status, meta = http(f"http://127.0.0.1:{port}/v2/models/cnn")
        provider = json.loads(meta)["parameters"]["execution_provider"] if status == 200 else "unknown"
        for n in sizes:
            body, header_length = v2_binary_body(info, images[n])
            first = V2Client(port, "/v2/models/cnn/infer", body, header_length)
            status, answer, answer_header = first.post()  # also the warm-up
            first.close()
            if status != 200:
                raise RuntimeError(f"batch {n}: the service answered {status}: {answer[:300]!r}")
            got, want = decode_v2_binary(answer, answer_header), np.asarray(model.predict_on_batch(images[n]))
            checks[str(n)] = {"max_abs_diff": float(np.abs(got - want).max()),
                              "argmax_agreement": float((got.argmax(1) == want.argmax(1)).mean())}  # fmt: skip
            point = measure_service(
                port, "/v2/models/cnn/infer", body, header_length, n, seconds, args.concurrency
            )
            points.append(point.row())
        phase("service_s")
    finally:
        server.stop()
    context = {"device": device, "service_provider": provider, "checks": checks, "phases_s": phases,
               "server_log_tail": server.log_tail(800)}  # fmt: skip
    return report(points, sizes, args, context)


def report(
    points: list[dict[str, Any]], sizes: list[int], args: argparse.Namespace, context: dict[str, Any]
) -> dict[str, Any]:
    """The JSON document: every point, service/raw per batch, the issue's target, and ``context``."""
    import jax
    import keras

    raw = {p["batch"]: p for p in points if p["side"] == "raw"}
    svc = {p["batch"]: p for p in points if p["side"] == "service"}
    ratios = {str(n): round(svc[n]["images_per_s"] / raw[n]["images_per_s"], 3) for n in sizes}
    target = None
    if TARGET_BATCH in sizes:
        ratio = ratios[str(TARGET_BATCH)]
        target = {"batch": TARGET_BATCH, "ratio": ratio, "goal": TARGET_RATIO, "met": ratio >= TARGET_RATIO}
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "quick": args.quick,
        "concurrency": args.concurrency, "seconds_per_point": args.seconds or (1.0 if args.quick else 8.0),
        "model": "tutorial CNN" + (f" from {args.keras}" if args.keras else " (random weights)"),
        "versions": {"python": sys.version.split()[0], "jax": jax.__version__, "keras": keras.__version__},
        "points": points, "ratios": ratios, "target": target, **context,
    }  # fmt: skip


def table(doc: dict[str, Any]) -> str:
    lines = [f"{doc['device']} (service: {doc['service_provider']}), {doc['concurrency']} clients, {doc['date']}",
             "| batch | raw images/s | raw p99 ms | service images/s | service p99 ms | service/raw | errors |",
             "|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for n, ratio in doc["ratios"].items():
        raw = next(p for p in doc["points"] if p["side"] == "raw" and p["batch"] == int(n))
        svc = next(p for p in doc["points"] if p["side"] == "service" and p["batch"] == int(n))
        lines.append(f"| {n} | {raw['images_per_s']:,.0f} | {raw['p99_ms']:.2f} | {svc['images_per_s']:,.0f} "
                     f"| {svc['p99_ms']:.2f} | {ratio:.2f} | {svc['errors']} |")  # fmt: skip
    if doc["target"]:
        t = doc["target"]
        lines.append(f"target: service >= {t['goal']:.0%} of raw at batch {t['batch']}: {t['ratio']:.2f} "
                     f"({'met' if t['met'] else 'NOT met'})")  # fmt: skip
    lines.append("seconds: " + ", ".join(f"{k.removesuffix('_s')} {v}" for k, v in doc["phases_s"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/gpu.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"batches {QUICK_SIZES}, 1 s per point")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], help="e.g. 64,1024,8192")
    parser.add_argument("--seconds", type=float, help="measured seconds per point (default 8; quick 1)")
    parser.add_argument("--concurrency", type=int, default=4, help="service clients (default 4)")
    parser.add_argument(
        "--keras", type=Path, help="a carried .keras file of the CNN instead of random weights"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-timeout", type=float, default=240.0, help="seconds until /readyz")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / f"{dt.date.today()}-gpu")
    args = parser.parse_args(argv)
    prepare_process()
    missing = missing_packages()
    if missing:
        print(
            f"missing packages: {', '.join(missing)}. Where pip works: bench/gpu.sh wheels (cp312 wheels into "
            ".whl/), then carry .whl; bench/gpu.sh installs them. Here: pip install '.[jax]'",
            file=sys.stderr,
        )
        return 2  # fmt: skip
    doc = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(doc, indent=1))
    print(table(doc))
    print(f"written: {args.out / 'gpu.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
