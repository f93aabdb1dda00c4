"""Per-process CPU share, RSS and open client connections of a server while wrk drives it.

CPU is each process's user + system time over the measured window (100 % = one core); RSS is the
largest value seen; connections are the established TCP connections on the server's port, per
process, the most seen in any sample (the docs warn that BentoML's workers can get unbalanced connections).
The whole machine's busy time is read from ``/proc/stat`` too, so the report can show how much CPU
went to processes that were neither the server nor wrk (noise).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

TICK = os.sysconf("SC_CLK_TCK")


def label(p: psutil.Process) -> str:
    """A short name for a server process, from its command line."""
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return f"?:{p.pid}"
    text = " ".join(cmd)
    if "_bentoml_impl.worker" in text:
        wid = cmd[cmd.index("--worker-id") + 1] if "--worker-id" in cmd else "?"
        return f"bentoml-worker-{wid}"
    if "multiprocessing.spawn" in text or "multiprocessing.resource_tracker" in text:
        kind = "mp-worker" if "spawn" in text else "mp-resource-tracker"
        try:
            parent = p.parent()
        except psutil.Error:
            parent = None
        return f"{label(parent)}/{kind}" if parent is not None else kind
    for key, name in (
        ("bentoml serve", "bentoml-main"),
        ("triton_python_backend_stub", "triton-python-stub"),
        ("tritonserver", "tritonserver"),
        ("pytriton_server", "pytriton-main (infer fn)"),
        ("mlserver", "mlserver-main"),
        ("uvicorn", "uvicorn-main"),
    ):
        if key in text:
            return name
    return os.path.basename(cmd[0]) if cmd else p.name()


def _busy_cores_s() -> float:
    """Busy CPU seconds of the whole machine so far (all cores; idle and iowait excluded)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


class Sampler:
    """Samples the processes ``tree()`` returns every ``interval_s`` between :meth:`start` and :meth:`stop`."""

    def __init__(self, tree: Callable[[], list[psutil.Process]], port: int, interval_s: float = 0.5) -> None:
        self.tree, self.port, self.interval_s = tree, port, interval_s
        self._stop = threading.Event()
        self._cpu0: dict[int, float] = {}
        self._cpu1: dict[int, float] = {}
        self._rss: dict[int, int] = {}
        self._names: dict[int, str] = {}
        self._conns: dict[int, int] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _cpu(self, p: psutil.Process) -> float | None:
        try:
            t = p.cpu_times()
            return float(t.user + t.system)
        except psutil.Error:
            return None

    def _sample(self, count_connections: bool) -> None:
        for p in self.tree():
            if p.pid not in self._names:
                self._names[p.pid] = label(p)
            cpu = self._cpu(p)
            if cpu is None:
                continue
            self._cpu0.setdefault(p.pid, cpu)
            self._cpu1[p.pid] = cpu
            try:
                self._rss[p.pid] = max(self._rss.get(p.pid, 0), p.memory_info().rss)
                if count_connections:
                    conns = p.net_connections(kind="tcp")
                    n = sum(
                        1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == self.port
                    )
                    self._conns[p.pid] = max(self._conns.get(p.pid, 0), n)
            except psutil.Error:
                pass

    def start(self) -> None:
        self._self0 = sum(os.times()[:2])
        self._busy0 = _busy_cores_s()
        self._t0 = time.monotonic()
        self._sample(count_connections=False)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample(count_connections=True)

    def stop(self, client_cpu_s: float = 0.0) -> dict[str, Any]:
        """Stop sampling; per-process CPU %, RSS MB, connections, and the machine's other load."""
        self._stop.set()
        self._thread.join()
        self._sample(count_connections=False)
        wall = time.monotonic() - self._t0
        procs = []
        for pid, name in self._names.items():
            if pid not in self._cpu1:
                continue
            cpu_s = self._cpu1[pid] - self._cpu0[pid]
            procs.append({"pid": pid, "name": name, "cpu_pct": round(100 * cpu_s / wall, 1),
                          "rss_mb": round(self._rss.get(pid, 0) / 2**20, 1),
                          "connections": self._conns.get(pid, 0)})  # fmt: skip
        server_cpu_s = sum(p["cpu_pct"] for p in procs) * wall / 100
        harness_s = sum(os.times()[:2]) - self._self0
        other_s = _busy_cores_s() - self._busy0 - server_cpu_s - client_cpu_s - harness_s
        return {
            "processes": sorted(procs, key=lambda p: p["name"]),
            "server_cpu_pct": round(100 * server_cpu_s / wall, 1),
            "server_rss_mb": round(sum(p["rss_mb"] for p in procs), 1),
            "other_cpu_pct": round(max(0.0, 100 * other_s / wall), 1),
            "wall_s": round(wall, 2),
        }
