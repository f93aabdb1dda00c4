"""ONNX Runtime providers by configuration and availability, with the CPU build of onnxruntime for real.

The GPU providers (TensorRT, CUDA) really are missing here, so the fallback, its warning and the strict
failure run against the real ``get_available_providers()``. TensorRT's options can only be built, not used,
on this machine: those tests hand :func:`choose` an availability list that names TensorRT (plain data, no
stand-in for ONNX Runtime) and check the options it would pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests

from service.models.config import ModelPolicy
from service.models.version import ServedVersion, State
from service.runtimes import providers as providers_module
from service.runtimes.base import ArtifactError
from service.runtimes.onnx import OnnxRuntime
from service.runtimes.providers import (
    CPU,
    TENSORRT,
    ProviderError,
    ProviderOptions,
    check_in_use,
    choose,
    engine_cache,
)
from service.schema import ModelMetadata
from service.settings import Settings
from tests.server import Server
from tests.service.modelfactory import write_scale_version

CUDA = "CUDAExecutionProvider"
AVAILABLE = ort.get_available_providers()
KNOWN = ort.get_all_providers()
X = np.arange(8, dtype=np.float32).reshape(2, 4)


@pytest.fixture(autouse=True)
def fresh_warnings() -> Iterator[None]:
    """The fallback warning is logged once per process; each test starts with none logged yet."""
    providers_module._warned.clear()
    yield
    providers_module._warned.clear()


def test_this_machine_has_the_cpu_build() -> None:
    assert CPU in AVAILABLE and TENSORRT not in AVAILABLE and CUDA not in AVAILABLE
    assert {TENSORRT, CUDA} <= set(KNOWN)


def onnx_version(tmp_path: Path, providers: list[str], **options: object) -> OnnxRuntime:
    directory = write_scale_version(tmp_path / "repo", "m", 1, 3.0)
    metadata = ModelMetadata.model_validate_json((directory / "metadata.json").read_bytes())
    return OnnxRuntime(directory, metadata, providers, threads=1, options=ProviderOptions(**options))  # type: ignore[arg-type]


def test_missing_gpu_providers_fall_back_to_cpu_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = onnx_version(tmp_path, [TENSORRT, CUDA, CPU])
    with caplog.at_level(logging.WARNING, logger="service.runtimes"):
        runtime.load()
        runtime.load()  # a second version (or a reload) says nothing new
    assert runtime.provider == CPU
    assert runtime.inline_ok  # on the CPU provider, short batches may run on the event loop
    np.testing.assert_array_equal(runtime.predict({"x": X})["y"], X * 3.0)
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = record.getMessage()
    assert f"{TENSORRT}, {CUDA} not available (model m version 1)" in message
    assert f"falling back to {CPU}" in message and str(AVAILABLE) in message


def test_cpu_is_appended_when_the_configuration_names_only_a_gpu_provider(tmp_path: Path) -> None:
    runtime = onnx_version(tmp_path, [CUDA])
    runtime.load()
    assert runtime.provider == CPU


def test_strict_fails_the_load_and_names_what_to_install(tmp_path: Path) -> None:
    runtime = onnx_version(tmp_path, [CUDA, CPU], strict=True)
    with pytest.raises(ProviderError) as caught:
        runtime.load()
    assert isinstance(caught.value, ArtifactError)  # a version failure without a traceback
    message = str(caught.value)
    assert f"{CUDA} not available (model m version 1)" in message
    assert "onnx_strict_providers is set" in message and "pip install '.[gpu]'" in message
    assert f"fall back to {CPU}" in message


def test_strict_with_only_available_providers_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runtime = onnx_version(tmp_path, [CPU], strict=True)
    with caplog.at_level(logging.WARNING, logger="service.runtimes"):
        runtime.load()
    assert runtime.provider == CPU and not caplog.records


def test_an_unknown_provider_name_fails_even_without_strict(tmp_path: Path) -> None:
    runtime = onnx_version(tmp_path, ["CudaExecutionProvider", CPU])
    with pytest.raises(
        ProviderError, match=r"unknown ONNX Runtime provider\(s\) \['CudaExecutionProvider'\]"
    ):
        runtime.load()


def test_tensorrt_gets_its_cache_and_precision_options(tmp_path: Path) -> None:
    options = ProviderOptions(tensorrt_cache_dir=tmp_path / "trt", tensorrt_fp16=True)
    cache = engine_cache(options, "cnn", 3)
    assert cache == tmp_path / "trt" / "cnn" / "3" / "fp16"
    chosen = choose([TENSORRT, CUDA, CPU], [TENSORRT, CUDA, CPU], KNOWN, options, cache)
    assert chosen[1:] == [CUDA, CPU]
    name, trt = chosen[0]  # type: ignore[misc]
    assert name == TENSORRT
    assert trt == {
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
    }
    fp32 = ProviderOptions(tensorrt_cache_dir=tmp_path / "trt")
    assert engine_cache(fp32, "cnn", 3) == tmp_path / "trt" / "cnn" / "3" / "fp32"
    no_cache = choose([TENSORRT], [TENSORRT, CPU], KNOWN, ProviderOptions(), None)
    assert no_cache == [(TENSORRT, {"trt_fp16_enable": "False"}), CPU]


def test_a_provider_the_session_dropped_counts_as_missing(caplog: pytest.LogCaptureFixture) -> None:
    """ONNX Runtime drops a provider whose libraries fail to load and runs on CPU; that is a fallback too."""
    asked = choose([CUDA, CPU], [CUDA, CPU], KNOWN, ProviderOptions())
    with caplog.at_level(logging.WARNING, logger="service.runtimes"):
        check_in_use(asked, [CPU], ProviderOptions(), " (model m version 2)")
    assert f"{CUDA} failed to start (see ONNX Runtime's log above) (model m version 2)" in caplog.text
    with pytest.raises(ProviderError, match="failed to start"):
        check_in_use(asked, [CPU], ProviderOptions(strict=True))
    check_in_use(asked, [CUDA, CPU], ProviderOptions(strict=True))  # all taken: nothing to say


def test_serving_yaml_overrides_strict_and_fp16_per_model(tmp_path: Path) -> None:
    settings = Settings(repository=tmp_path, tensorrt_cache_dir=tmp_path / "engines")
    default = ModelPolicy().effective(settings)
    assert (default.onnx_strict_providers, default.tensorrt_fp16) == (False, False)
    assert default.tensorrt_cache_dir == tmp_path / "engines"
    own = ModelPolicy(onnx_strict_providers=True, tensorrt_fp16=True).effective(settings)
    assert (own.onnx_strict_providers, own.tensorrt_fp16) == (True, True)
    strict_server = Settings(repository=tmp_path, onnx_strict_providers=True)
    assert ModelPolicy(onnx_strict_providers=False).effective(strict_server).onnx_strict_providers is False


def test_a_strict_version_is_failed_with_the_reason(tmp_path: Path) -> None:
    directory = write_scale_version(tmp_path / "repo", "m", 1, 1.0)
    settings = Settings(repository=tmp_path / "repo", onnx_providers=[CUDA, CPU], onnx_strict_providers=True)
    served = ServedVersion("m", 1, directory, "onnx")
    asyncio.run(served.load(ModelPolicy().effective(settings)))
    assert served.state is State.FAILED and served.error is not None
    assert served.error.startswith(f"ONNX Runtime provider(s) {CUDA} not available (model m version 1)")


@pytest.mark.e2e
def test_a_real_server_fails_the_strict_model_and_falls_back_for_the_other(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_scale_version(repo, "strict", 1, 1.0)
    write_scale_version(repo, "loose", 1, 2.0)
    (repo / "serving.yaml").write_text(
        "models:\n"
        f"  strict: {{onnx_providers: [{CUDA}, {CPU}], onnx_strict_providers: true}}\n"
        f"  loose: {{onnx_providers: [{TENSORRT}, {CUDA}, {CPU}], tensorrt_fp16: true}}\n"
    )
    with Server(repo, tmp_path / "server.log", workers=1) as server:
        models = {m["name"]: m for m in requests.get(server.url + "/v1/models", timeout=10).json()["models"]}
        (strict,) = models["strict"]["versions"]
        assert strict["state"] == "failed" and strict["provider"] is None
        assert f"{CUDA} not available (model strict version 1)" in strict["error"]
        assert "onnx_strict_providers is set" in strict["error"]
        ready = requests.get(server.url + "/readyz/strict", timeout=10)
        assert ready.status_code == 503 and "onnx_strict_providers" in ready.text
        (loose,) = models["loose"]["versions"]
        assert loose["state"] == "ready" and loose["provider"] == CPU
        answer = requests.post(
            server.url + "/v1/predict", json={"model": "loose", "inputs": X.tolist()}, timeout=10
        )
        assert answer.status_code == 200 and answer.json()["outputs"]["y"] == (X * 2.0).tolist()
        assert server.metric("serving_model_info", model="loose", runtime="onnx", provider=CPU) == 1
        assert server.metric("serving_model_state", model="strict", state="failed") == 1
        metrics = requests.get(server.url + "/metrics", timeout=10).text
        assert "serving_gpu_" not in metrics  # no NVML here: no GPU series at all
    log = (tmp_path / "server.log").read_text()
    assert f"{TENSORRT}, {CUDA} not available (model loose version 1)" in log
    assert "model loose version 1 ready in" in log and f"({CPU})" in log
    assert "model strict version 1 failed to load" in log
