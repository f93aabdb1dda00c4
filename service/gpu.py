"""GPU metrics through NVML (``nvidia-ml-py``, module ``pynvml``): utilisation and memory per device.

:func:`start_gpu_sampler` runs in every worker (from :class:`service.metrics.Metrics`). When NVML
initialises and finds devices, a thread samples each one every few seconds into
``serving_gpu_utilization_ratio``, ``serving_gpu_memory_used_bytes`` and ``serving_gpu_memory_total_bytes``
(labels ``gpu`` = NVML index, ``name`` = the device's name; every worker sees the same devices, so the
gauges keep the largest live value). Without NVML's library, a driver or a device, nothing is exported and
the reason is logged once, at debug level: a CPU machine's ``/metrics`` has no ``serving_gpu_*`` series.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.metrics import Metrics

log = logging.getLogger("service.gpu")
SAMPLE_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    handle: Any


class GpuSampler:
    """Samples every NVML device into the process's GPU gauges.

    ``nvml`` is the ``pynvml`` module (imported when omitted); tests hand in a stand-in module object,
    since NVML cannot run on a machine without an NVIDIA driver.
    """

    def __init__(self, metrics: Metrics | None, nvml: ModuleType | None = None) -> None:
        self.metrics = metrics
        self.nvml = nvml
        self.devices: list[Device] = []

    def open(self) -> bool:
        """Initialise NVML and list the devices; False (and one debug line) when there is none to sample."""
        try:
            nvml = self.nvml or importlib.import_module("pynvml")
            nvml.nvmlInit()
            count = int(nvml.nvmlDeviceGetCount())
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self.devices = [Device(i, _text(nvml.nvmlDeviceGetName(h)), h) for i, h in enumerate(handles)]
        except Exception as exc:  # ImportError, or pynvml.NVMLError_* (no library, no driver, ...)
            log.debug("no GPU metrics: NVML is not usable here (%s: %s)", type(exc).__name__, exc)
            return False
        self.nvml = nvml
        if not self.devices:
            log.debug("no GPU metrics: NVML found no device")
            return False
        log.info("GPU metrics for %s", ", ".join(f"{d.index}: {d.name}" for d in self.devices))
        return True

    def sample(self) -> None:
        """Record utilisation and memory of every device now; a figure NVML refuses is left out."""
        assert self.nvml is not None and self.metrics is not None, "sample() needs open() and metrics"
        m = self.metrics
        for device in self.devices:
            labels = (str(device.index), device.name)
            try:
                memory = self.nvml.nvmlDeviceGetMemoryInfo(device.handle)
                m.gpu_memory_used.labels(*labels).set(memory.used)
                m.gpu_memory_total.labels(*labels).set(memory.total)
            except Exception as exc:  # pynvml.NVMLError: not supported (MIG), device lost, ...
                log.debug("GPU %s memory not sampled: %s", device.index, exc)
            try:
                rates = self.nvml.nvmlDeviceGetUtilizationRates(device.handle)
                m.gpu_utilization.labels(*labels).set(rates.gpu / 100.0)
            except Exception as exc:
                log.debug("GPU %s utilisation not sampled: %s", device.index, exc)

    def run_forever(self, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        while True:
            time.sleep(interval_s)
            self.sample()


def visible_gpus(nvml: ModuleType | None = None) -> list[str]:
    """Names of the GPUs NVML sees here; empty without NVML's library, a driver or a device."""
    sampler = GpuSampler(None, nvml)
    return [d.name for d in sampler.devices] if sampler.open() else []


def start_gpu_sampler(metrics: Metrics, nvml: ModuleType | None = None) -> GpuSampler | None:
    """Sample once now and then every :data:`SAMPLE_INTERVAL_S` on a daemon thread; ``None`` without GPUs."""
    sampler = GpuSampler(metrics, nvml)
    if not sampler.open():
        return None
    sampler.sample()
    threading.Thread(target=sampler.run_forever, name="gpu-metrics", daemon=True).start()
    return sampler


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
