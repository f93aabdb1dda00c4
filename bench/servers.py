"""How each server under test is started, where it is ready, and which scenarios drive it."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import venvs
from bench.bodies import ModelInfo
from bench.config import BATCH_IMAGES, BENCH, ROOT, BenchConfig
from bench.procs import ServerProcess, free_port

PROJECT_BIN = Path(sys.executable).parent


@dataclass
class Launch:
    """A started-but-not-yet-ready server."""

    process: ServerProcess
    port: int
    ready_path: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class ServerSpec:
    name: str
    description: str
    scenarios: tuple[str, ...]
    launch: Callable[[ModelInfo, BenchConfig, Path], Launch]
    serving_metrics: bool = False  # has our serving_request_duration_seconds histogram in /metrics


def _env(model: ModelInfo, cfg: BenchConfig, **extra: str) -> dict[str, str]:
    return {**os.environ, **model.env(), "BENCH_WORKERS": str(cfg.workers), "PYTHONUNBUFFERED": "1", **extra}


def launch_ours(model: ModelInfo, cfg: BenchConfig, work: Path, precision: str = "fp32") -> Launch:
    port = free_port()
    env = _env(
        model, cfg,
        SERVING_REPOSITORY=str(cfg.repo.resolve()), SERVING_PORT=str(port), SERVING_WORKERS=str(cfg.workers),
        SERVING_GRPC_TFSERVING_PORT="0", SERVING_GRPC_V2_PORT="0", BENTOML_HOME=str(work / "bentoml-home"),
        SERVING_PRECISION=precision,
    )  # fmt: skip
    cmd = [str(PROJECT_BIN / "bentoml"), "serve", "service.service:ModelServer", "--host", "127.0.0.1",
           "--port", str(port)]  # fmt: skip
    return Launch(ServerProcess(cmd, env, ROOT, work / "server.log").start(), port, "/readyz")


def launch_ours_int8(model: ModelInfo, cfg: BenchConfig, work: Path) -> Launch:
    """Ours serving the model's int8 variant (``model.int8.onnx``, exported beside ``model.onnx``)."""
    return launch_ours(model, cfg, work, precision="int8")


def launch_naive(model: ModelInfo, cfg: BenchConfig, work: Path) -> Launch:
    port = free_port()
    env = _env(model, cfg, BENTOML_HOME=str(work / "bentoml-home"))
    cmd = [str(PROJECT_BIN / "bentoml"), "serve", "bench.peers.naive_bentoml:NaiveCNN", "--host", "127.0.0.1",
           "--port", str(port)]  # fmt: skip
    return Launch(ServerProcess(cmd, env, ROOT, work / "server.log").start(), port, "/readyz")


def launch_bare(model: ModelInfo, cfg: BenchConfig, work: Path) -> Launch:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "bench.peers.bare_asgi:app", "--host", "127.0.0.1", "--port",
           str(port), "--workers", str(cfg.workers), "--loop", "uvloop", "--http", "httptools",
           "--no-access-log", "--log-level", "warning"]  # fmt: skip
    return Launch(
        ServerProcess(cmd, _env(model, cfg), ROOT, work / "server.log").start(), port, "/v2/health/ready"
    )


def launch_mlserver(model: ModelInfo, cfg: BenchConfig, work: Path) -> Launch:
    bindir = venvs.ensure("mlserver")
    src = BENCH / "peers" / "mlserver"
    folder = work / "mlserver-repo"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / model.name).mkdir(parents=True)
    port = free_port()
    settings = json.loads((src / "settings.json").read_text())
    settings.update(http_port=port, grpc_port=free_port(), metrics_port=free_port(),
                    metrics_dir=str(work / "mlserver-metrics"))  # fmt: skip
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    model_settings = json.loads((src / "model-settings.json").read_text())
    model_settings["name"] = model.name
    model_settings["parameters"]["uri"] = str(model.onnx_path)
    (folder / model.name / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    shutil.copy(src / "model.py", folder / model.name / "model.py")
    cmd = [str(bindir / "mlserver"), "start", str(folder)]
    proc = ServerProcess(cmd, _env(model, cfg), folder, work / "server.log").start()
    return Launch(proc, port, f"/v2/models/{model.name}/ready")


def launch_pytriton(model: ModelInfo, cfg: BenchConfig, work: Path) -> Launch:
    bindir = venvs.ensure("pytriton")
    # PyTriton wants a fresh workspace each run, and makes Unix sockets in it: a short folder under the
    # temp dir, since a socket path over 107 bytes fails the model's start (AF_UNIX path too long)
    workspace = Path(tempfile.mkdtemp(prefix="pytriton-")) / "workspace"
    python = bindir / "python"
    libdir = venvs.libdir(python)
    port = free_port()
    env = _env(
        model, cfg,
        BENCH_PORT=str(port), BENCH_GRPC_PORT=str(free_port()), BENCH_METRICS_PORT=str(free_port()),
        BENCH_WORKSPACE=str(workspace),
        LD_LIBRARY_PATH=":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p),
    )  # fmt: skip
    cmd = [str(python), str(BENCH / "peers" / "pytriton_server.py")]
    proc = ServerProcess(cmd, env, work, work / "server.log").start()
    return Launch(proc, port, f"/v2/models/{model.name}/ready")


BINARY = f"v2-binary-x{BATCH_IMAGES}"
SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec("ours", "this project's BentoML service (native API, V2 JSON, V2 binary)",
                   ("native-json", "v2-json", BINARY), launch_ours, serving_metrics=True),
        ServerSpec("ours-int8", "the same service with the model's int8 variant (SERVING_PRECISION=int8)",
                   ("native-json", BINARY), launch_ours_int8, serving_metrics=True),
        ServerSpec("naive-bentoml", "tutorial-style BentoML: one @bentoml.api(batchable=True) numpy endpoint",
                   ("naive-json",), launch_naive),
        ServerSpec("mlserver", "MLServer 1.7.1, custom ONNX Runtime class, adaptive batching (64, 2 ms)",
                   ("v2-json",), launch_mlserver),
        ServerSpec("pytriton", "PyTriton 0.7.0 (bundled Triton), dynamic batching (64, 100 µs)",
                   ("v2-json",), launch_pytriton),
        ServerSpec("bare-asgi", "ceiling: uvicorn + orjson + ONNX Runtime, no framework",
                   ("v2-json",), launch_bare),
    )
}  # fmt: skip
