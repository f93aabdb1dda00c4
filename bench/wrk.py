"""The load generator: wrk with a Lua script that posts one body file and prints its summary as JSON.

wrk runs pinned to one core (``taskset -c <cpu>``); its latency percentiles, request count and
error counts come from the script's ``done()`` hook, so nothing is parsed from wrk's text output.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.config import Scenario

MARK = "BENCH_JSON "

LUA = r"""
local f = assert(io.open([==[{body}]==], "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,'
    .. '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass
class WrkResult:
    """One wrk run. ``non2xx`` is wrk's count of HTTP statuses >= 400 (it has no separate 3xx count)."""

    connections: int
    threads: int
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    non2xx: int
    socket_errors: int
    client_cpu_pct: float  # wrk's own CPU (user + system) over the run, % of one core

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def write_script(scenario: Scenario, folder: Path) -> Path:
    """A Lua script for ``scenario`` in ``folder``."""
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in scenario.headers.items())
    script = folder / f"{scenario.name}.lua"
    script.write_text(LUA.format(body=scenario.body_file, headers=headers, mark=MARK))
    return script


def wrk_available() -> bool:
    return shutil.which("wrk") is not None and shutil.which("taskset") is not None


def run_wrk(
    url: str,
    script: Path,
    connections: int,
    threads: int,
    duration_s: float,
    cpu: int = 1,
    timeout_s: float = 10.0,
) -> WrkResult:
    """Run wrk against ``url`` for ``duration_s`` seconds and return its summary."""
    cmd = [
        "taskset", "-c", str(cpu), "wrk", "-t", str(threads), "-c", str(connections),
        "-d", f"{max(duration_s, 1.0):g}s", "--timeout", f"{timeout_s:g}s", "--latency", "-s", str(script), url,
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 30)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(MARK)]
    if out.returncode != 0 or not lines:
        raise RuntimeError(
            f"wrk failed (rc {out.returncode}): {out.stderr.strip()[-500:]} {out.stdout[-500:]}"
        )
    s = json.loads(lines[-1][len(MARK) :])
    dur = s["duration_us"] / 1e6
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkResult(
        connections=connections,
        threads=threads,
        requests=s["requests"],
        duration_s=round(dur, 3),
        rps=s["requests"] / dur if dur > 0 else 0.0,
        p50_ms=s["p50_us"] / 1000,
        p90_ms=s["p90_us"] / 1000,
        p99_ms=s["p99_us"] / 1000,
        max_ms=s["max_us"] / 1000,
        mean_ms=s["mean_us"] / 1000,
        non2xx=s["non2xx"],
        socket_errors=s["connect"] + s["read"] + s["write"] + s["timeout"],
        client_cpu_pct=100.0 * cpu_s / wall if wall > 0 else 0.0,
    )
