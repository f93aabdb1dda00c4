"""GPU metrics through NVML: the real absent path here, and the sampling logic against a stand-in module.

This machine has no NVIDIA driver, so the real ``pynvml`` (nvidia-ml-py, installed) fails to initialise:
that path is tested for real (nothing exported, one debug line). NVML itself cannot run here, so the
sampling is tested with a stand-in ``pynvml`` module object handed to :class:`GpuSampler` — the only
stand-in, for hardware this machine lacks. A real server's ``/metrics`` without GPU series is checked in
``tests/service/runtimes/test_onnx_providers.py``.
"""

from __future__ import annotations

import logging
import threading
import types
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import REGISTRY

from service.gpu import GpuSampler, start_gpu_sampler
from service.metrics import get_metrics


class FakeNVMLError(Exception):
    """What pynvml raises (``pynvml.NVMLError``)."""


@dataclass
class Memory:
    used: int
    total: int


@dataclass
class Rates:
    gpu: int
    memory: int = 0


def fake_nvml(devices: list[dict[str, Any]], init_error: Exception | None = None) -> types.ModuleType:
    """A module object with the pynvml functions the sampler calls, over ``devices`` (mutable)."""
    nvml = types.ModuleType("pynvml")

    def init() -> None:
        if init_error is not None:
            raise init_error

    def rates(handle: int) -> Rates:
        value = devices[handle]["util"]
        if isinstance(value, Exception):
            raise value
        return Rates(value)

    nvml.nvmlInit = init  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetCount = lambda: len(devices)  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetName = lambda h: devices[h]["name"]  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetMemoryInfo = lambda h: Memory(devices[h]["used"], devices[h]["total"])  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetUtilizationRates = rates  # type: ignore[attr-defined]
    return nvml


def value(metric: str, gpu: str, name: str) -> float | None:
    return REGISTRY.get_sample_value(metric, {"gpu": gpu, "name": name})


def test_without_nvml_nothing_is_sampled_and_one_debug_line_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = get_metrics()
    threads = {t.name for t in threading.enumerate()}
    with caplog.at_level(logging.DEBUG, logger="service.gpu"):
        assert start_gpu_sampler(metrics) is None  # the real pynvml, no driver here
    (record,) = caplog.records
    assert record.levelno == logging.DEBUG
    assert record.getMessage().startswith(
        "no GPU metrics: NVML is not usable here (NVMLError_LibraryNotFound"
    )
    assert {t.name for t in threading.enumerate()} - threads == set()  # no sampling thread


def test_each_device_is_sampled_and_resampled() -> None:
    devices = [
        {"name": "Fake H200 (test)", "util": 37, "used": 5 * 2**30, "total": 141 * 2**30},
        {"name": b"Fake H100 (test)", "util": 100, "used": 0, "total": 80 * 2**30},  # older pynvml: bytes
    ]
    sampler = start_gpu_sampler(get_metrics(), fake_nvml(devices))
    assert sampler is not None and [d.name for d in sampler.devices] == [
        "Fake H200 (test)",
        "Fake H100 (test)",
    ]
    assert "gpu-metrics" in {t.name for t in threading.enumerate()}
    assert value("serving_gpu_utilization_ratio", "0", "Fake H200 (test)") == pytest.approx(0.37)
    assert value("serving_gpu_utilization_ratio", "1", "Fake H100 (test)") == 1.0
    assert value("serving_gpu_memory_used_bytes", "0", "Fake H200 (test)") == 5 * 2**30
    assert value("serving_gpu_memory_total_bytes", "0", "Fake H200 (test)") == 141 * 2**30
    assert value("serving_gpu_memory_total_bytes", "1", "Fake H100 (test)") == 80 * 2**30
    devices[0] |= {"util": 90, "used": 100 * 2**30}
    sampler.sample()
    assert value("serving_gpu_utilization_ratio", "0", "Fake H200 (test)") == pytest.approx(0.9)
    assert value("serving_gpu_memory_used_bytes", "0", "Fake H200 (test)") == 100 * 2**30


def test_a_figure_nvml_refuses_is_left_out_and_the_rest_is_kept() -> None:
    devices = [{"name": "Fake MIG (test)", "util": FakeNVMLError("Not Supported"), "used": 7, "total": 10}]
    sampler = GpuSampler(get_metrics(), fake_nvml(devices))
    assert sampler.open()
    sampler.sample()
    assert value("serving_gpu_utilization_ratio", "0", "Fake MIG (test)") is None
    assert value("serving_gpu_memory_used_bytes", "0", "Fake MIG (test)") == 7


@pytest.mark.parametrize(
    ("devices", "error", "reason"),
    [
        ([], None, "no GPU metrics: NVML found no device"),
        ([{"name": "x"}], FakeNVMLError("Driver Not Loaded"), "FakeNVMLError: Driver Not Loaded"),
    ],
)
def test_no_device_or_no_driver_means_no_sampler(
    caplog: pytest.LogCaptureFixture, devices: list[dict[str, Any]], error: Exception | None, reason: str
) -> None:
    with caplog.at_level(logging.DEBUG, logger="service.gpu"):
        assert start_gpu_sampler(get_metrics(), fake_nvml(devices, error)) is None
    assert reason in caplog.text
