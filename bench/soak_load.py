"""Drive the server: a fixed number of requests from a bounded set of client threads, with a deadline.

Request ``i`` (a shared counter) sends entry ``i % len(jobs)`` of the schedule, so every (protocol,
model, input) pair gets the same share. Every answer is checked against the case's reference; failures
and wrong answers are counted per kind, and the first few are kept verbatim.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.soak_cases import Case
from bench.soak_clients import Client, RequestFailed

KEEP_ERRORS = 10


@dataclass
class Tally:
    """What one phase did."""

    requested: int
    sent: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # kind -> failed requests
    wrong: Counter[str] = field(default_factory=Counter)  # kind -> answers that differ from the reference
    by_kind: Counter[str] = field(default_factory=Counter)
    by_model: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # kind -> seconds
    duration_s: float = 0.0
    timed_out: bool = False

    def summary(self) -> dict[str, Any]:
        per_kind = {}
        for kind, n in sorted(self.by_kind.items()):
            lat = np.asarray(self.latencies.get(kind, [0.0])) * 1000
            per_kind[kind] = {"requests": n, "errors": self.errors[kind], "wrong": self.wrong[kind],
                              "p50_ms": round(float(np.percentile(lat, 50)), 2),
                              "p99_ms": round(float(np.percentile(lat, 99)), 2)}  # fmt: skip
        return {
            "requested": self.requested,
            "sent": self.sent,
            "errors": sum(self.errors.values()),
            "wrong": sum(self.wrong.values()),
            "duration_s": round(self.duration_s, 2),
            "rps": round(self.sent / self.duration_s, 1) if self.duration_s else 0.0,
            "timed_out": self.timed_out,
            "per_kind": per_kind,
            "per_model": dict(sorted(self.by_model.items())),
            "first_errors": self.first_errors,
        }


def run_phase(
    clients: list[Client], jobs: list[tuple[str, Case]], requests: int, deadline: float, start: int = 0
) -> Tally:
    """Send ``requests`` requests (schedule entries from ``start`` on) over ``clients``, one thread each;
    stop early at ``deadline`` (``time.monotonic()``)."""
    tally = Tally(requests)
    counter = itertools.count()
    lock = threading.Lock()

    def work(client: Client) -> None:
        local = Tally(0)
        while True:
            i = next(counter)  # atomic in CPython
            if i >= requests:
                break
            if time.monotonic() > deadline:
                local.timed_out = True
                break
            kind, case = jobs[(start + i) % len(jobs)]
            t0 = time.perf_counter()
            try:
                ok = case.matches(client.send(kind, case))
                if not ok and len(local.first_errors) < KEEP_ERRORS:
                    local.first_errors.append(f"{kind} {case.name}: answer differs from the reference")
                local.wrong[kind] += not ok
            except RequestFailed as e:
                local.errors[kind] += 1
                if len(local.first_errors) < KEEP_ERRORS:
                    local.first_errors.append(str(e))
            local.latencies.setdefault(kind, []).append(time.perf_counter() - t0)
            local.by_kind[kind] += 1
            local.by_model[case.model] += 1
            local.sent += 1
        with lock:
            tally.sent += local.sent
            tally.errors.update(local.errors)
            tally.wrong.update(local.wrong)
            tally.by_kind.update(local.by_kind)
            tally.by_model.update(local.by_model)
            tally.timed_out |= local.timed_out
            tally.first_errors += local.first_errors[: KEEP_ERRORS - len(tally.first_errors)]
            for kind, lat in local.latencies.items():
                tally.latencies.setdefault(kind, []).extend(lat)

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.monotonic() + 60))  # each call has its own timeout
    tally.duration_s = time.monotonic() - t0
    return tally
