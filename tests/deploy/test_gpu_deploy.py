"""The GPU variants of the image, the compose file and the Kubernetes overlay, checked without a GPU or podman:
the Dockerfile passes hadolint and installs the ``gpu`` extra, the compose override merges into a serving
service that reserves NVIDIA GPUs, and every setting they pass is a real one (rendered and schema-checked
overlays: test_k8s_manifests.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from deploy.tfprotos import pin
from service.settings import Settings
from tests.deploy.test_k8s_manifests import _container, _only, render

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile.gpu"
COMPOSE = [str(BIN / "docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "docker-compose.gpu.yml")]  # fmt: skip
NON_SERVING_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE", "BENTOML_HOME"}


def settings_from(env: dict[str, str]) -> Settings:
    """Settings built from an env mapping; every SERVING_* name must be a field (else this fails)."""
    serving = {k: v for k, v in env.items() if k.startswith("SERVING_")}
    fields = {f"SERVING_{name.upper()}" for name in Settings.model_fields}
    assert set(serving) <= fields, set(serving) - fields
    assert set(env) - set(serving) <= NON_SERVING_ENV, set(env) - set(serving)
    values = {k.removeprefix("SERVING_").lower(): v for k, v in serving.items()}
    values = {k: json.loads(v) if v.startswith("[") else v for k, v in values.items()}
    return Settings(**values)


def test_the_gpu_dockerfile_passes_hadolint_and_installs_the_gpu_extra() -> None:
    result = subprocess.run([str(BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = DOCKERFILE.read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {r.split("[")[0].split(">")[0] for r in extras["gpu"]} == {
        "onnxruntime-gpu",
        "jax",
        "nvidia-ml-py",
    }
    assert "pip install './[gpu]'" in text and "pip uninstall -y onnxruntime onnxruntime-gpu" in text
    assert pin("onnxruntime-gpu").startswith("onnxruntime-gpu[cuda,cudnn]")  # what the RUN line reinstalls
    assert "ARG SERVING_IMAGE=keras-serving\nFROM ${SERVING_IMAGE} AS gpu\n" in text
    assert text.rstrip().endswith("USER 10001:10001")  # not root at run time, as the serving image


def compose_serving() -> dict[str, Any]:
    assert subprocess.run([*COMPOSE, "config", "-q"], capture_output=True).returncode == 0
    rendered = subprocess.run(
        [*COMPOSE, "config", "--format", "json"], capture_output=True, text=True, check=True
    )
    return json.loads(rendered.stdout)["services"]["serving"]  # type: ignore[no-any-return]


def test_the_compose_override_reserves_the_gpus_and_keeps_the_base_service() -> None:
    serving = compose_serving()
    assert serving["build"]["dockerfile"] == "deploy/Dockerfile.gpu" and serving["build"]["target"] == "gpu"
    assert serving["image"] == "keras-serving-gpu"
    (device,) = serving["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == -1  # all
    settings = settings_from(serving["environment"])
    assert settings.onnx_providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert settings.workers == 2  # the base file's environment is merged, not replaced
    volumes = {v["target"]: v for v in serving["volumes"]}
    assert volumes["/app/models"]["read_only"]  # the base's read-only repository stays
    assert volumes[str(settings.tensorrt_cache_dir)]["type"] == "volume"  # engines outlive the container
    assert "/var/cache/keras-serving-trt" in DOCKERFILE.read_text()  # the image creates it for uid 10001
    assert {p["target"] for p in serving["ports"]} == {3000, 8500, 8001}


def test_the_gpu_overlay_passes_real_settings_and_caches_engines_on_its_scratch_volume() -> None:
    deployment = _only(render(ROOT / "deploy" / "k8s" / "overlays" / "gpu"), "Deployment")
    container = _container(deployment)
    settings = settings_from({e["name"]: e["value"] for e in container["env"]})
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert any(
        str(settings.tensorrt_cache_dir).startswith(m + "/") for m in mounts
    )  # writable, not the root fs
    assert container["image"] == "keras-serving-gpu:latest"
    overlay = yaml.safe_load((ROOT / "deploy/k8s/overlays/gpu/deployment-gpu.yaml").read_text())
    env = {e["name"]: e["value"] for e in _container(overlay)["env"]}
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
