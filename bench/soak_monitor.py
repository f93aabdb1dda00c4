"""RSS and open file descriptors of every server process, sampled at intervals during the soak.

A snapshot maps each live process of the server's tree to its label (``bentoml-main``,
``bentoml-worker-1``, ...), RSS and ``/proc/<pid>/fd`` count. :class:`Monitor` takes one every
``interval_s`` in a background thread; the soak also takes named snapshots (idle, after warm-up, end).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from bench.sampler import _busy_cores_s, label

Snapshot = dict[str, dict[str, Any]]  # label -> {"pid", "rss_mb", "fds"}


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def snapshot(tree: Callable[[], list[psutil.Process]]) -> Snapshot:
    found: Snapshot = {}
    for p in tree():
        try:
            found[label(p)] = {
                "pid": p.pid,
                "rss_mb": round(p.memory_info().rss / 2**20, 1),
                "fds": open_fds(p.pid),
            }
        except (psutil.Error, OSError):
            continue  # it ended meanwhile
    return found


class CpuShare:
    """CPU used between construction and :meth:`stop` by the server, by this process (the clients) and by
    everything else on the machine (other people's work), each in % of one core."""

    def __init__(self, tree: Callable[[], list[psutil.Process]]) -> None:
        self.tree = tree
        self._t0, self._busy0, self._self0 = time.monotonic(), _busy_cores_s(), _own_cpu_s()
        self._server0 = self._server_cpu_s()

    def _server_cpu_s(self) -> dict[int, float]:
        found = {}
        for p in self.tree():
            try:
                t = p.cpu_times()
                found[p.pid] = float(t.user + t.system)
            except psutil.Error:
                continue
        return found

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        now = self._server_cpu_s()
        server = sum(now[pid] - self._server0.get(pid, 0.0) for pid in now)
        clients = _own_cpu_s() - self._self0
        other = max(0.0, _busy_cores_s() - self._busy0 - server - clients)
        pct = {"server_cpu_pct": server, "client_cpu_pct": clients, "other_cpu_pct": other}
        return {k: round(100 * v / wall, 1) for k, v in pct.items()}


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class Monitor:
    """Samples :func:`snapshot` every ``interval_s`` between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        tree: Callable[[], list[psutil.Process]],
        interval_s: float = 5.0,
        log: Callable[[str], None] | None = None,
        log_every_s: float = 30.0,
    ) -> None:
        self.tree, self.interval_s, self.log, self.log_every_s = tree, interval_s, log, log_every_s
        self.series: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        next_log = self.log_every_s
        while True:
            t = time.monotonic() - self._t0
            self.series.append({"t_s": round(t, 1), "procs": snapshot(self.tree)})
            if self.log is not None and t >= next_log:
                procs = self.series[-1]["procs"]
                self.log(
                    f"{t:.0f} s: "
                    + ", ".join(f"{k} {v['rss_mb']} MB {v['fds']} fds" for k, v in procs.items())
                )
                next_log += self.log_every_s
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.series


def compare(
    warm: Snapshot, end: Snapshot, series: list[dict[str, Any]], max_growth_pct: float, fd_slack: int
) -> list[dict[str, Any]]:
    """Per process: RSS after warm-up vs at the end (and the largest seen), fds at both points."""
    rows = []
    for name in sorted(set(warm) | set(end)):
        a, b = warm.get(name), end.get(name)
        seen = [s["procs"][name] for s in series if name in s["procs"]]
        row: dict[str, Any] = {"process": name}
        if a is None or b is None or a["pid"] != b["pid"]:
            row.update(ok=False, problem="process appeared, ended or was restarted during the soak",
                       pid_warm=a and a["pid"], pid_end=b and b["pid"])  # fmt: skip
            rows.append(row)
            continue
        growth = 100 * (b["rss_mb"] - a["rss_mb"]) / a["rss_mb"] if a["rss_mb"] else 0.0
        row.update(
            pid=a["pid"], rss_warm_mb=a["rss_mb"], rss_end_mb=b["rss_mb"], rss_growth_pct=round(growth, 2),
            rss_max_mb=max([a["rss_mb"], b["rss_mb"], *(s["rss_mb"] for s in seen)]),
            fds_warm=a["fds"], fds_end=b["fds"], fds_max=max([a["fds"], b["fds"], *(s["fds"] for s in seen)]),
        )  # fmt: skip
        if seen:  # growth over the second half only: near 0 when RSS has levelled off (no leak)
            mid = seen[len(seen) // 2]["rss_mb"]
            row.update(rss_mid_mb=mid, rss_late_growth_pct=round(100 * (b["rss_mb"] - mid) / mid, 2))
        row["rss_ok"] = growth < max_growth_pct
        row["fds_ok"] = b["fds"] <= a["fds"] + fd_slack
        row["ok"] = row["rss_ok"] and row["fds_ok"]
        rows.append(row)
    return rows
