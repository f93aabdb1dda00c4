"""The tuner's search and its definition of "best", apart from any server so they can be tested on
synthetic measurements.

The search is a coordinate descent over :data:`bench.tune_space.STAGES`: each stage varies one group of
settings around the best configuration so far (workers x threads first, then ``max_batch_size``,
``max_wait_ms``, then the precision/runtime variants), reusing configurations already measured, until
the time budget or the ``--configs`` cap says stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.tune_space import STAGES, Axes, Candidate, stage_candidates

BEST_RULE = (
    "best = the configuration with the highest throughput (images/s; equal to req/s for one image per "
    "request) at any measured client count whose client-side p99 (wrk) is at or under the budget with zero "
    "errors (non-2xx answers and socket errors); that client count is its operating point. When no point "
    "of any configuration qualifies, the closest configuration is the one whose error-free point has the "
    "lowest p99."
)

Point = dict[str, Any]
Result = dict[str, Any]
Measure = Callable[[Candidate, str], Result]  # (configuration, stage) -> {"status", "points", ...}


def errors(p: Point) -> int:
    return int(p["non2xx"]) + int(p["socket_errors"])


def meets(p: Point, budget_ms: float) -> bool:
    return errors(p) == 0 and p["p99_ms"] <= budget_ms


def operating_point(points: list[Point], budget_ms: float) -> Point | None:
    """The highest-throughput point within the budget, or None."""
    ok = [p for p in points if meets(p, budget_ms)]
    return max(ok, key=lambda p: p["images_per_s"]) if ok else None


def closest_point(points: list[Point]) -> Point | None:
    """The point nearest to a budget nothing met: fewest errors, then lowest p99, then most throughput."""
    if not points:
        return None
    return min(points, key=lambda p: (errors(p) > 0, p["p99_ms"], -p["images_per_s"]))


def summarize(result: Result, budget_ms: float) -> Result:
    """Add ``meets`` and ``operating`` (the point this configuration is judged by) to a measured result."""
    points = result.get("points", []) if result.get("status") == "ok" else []
    op = operating_point(points, budget_ms)
    result["meets"] = op is not None
    result["operating"] = op if op is not None else closest_point(points)
    return result


def score(result: Result) -> tuple[int, float]:
    """Larger is better: within budget by throughput, then over budget by (lower) p99, then failed."""
    op = result.get("operating")
    if op is None:
        return (0, 0.0)
    if result["meets"]:
        return (2, float(op["images_per_s"]))
    return (1, -float(op["p99_ms"]))


def best(results: list[Result]) -> Result | None:
    """The winner under :data:`BEST_RULE` (or the closest when nothing meets); None if nothing ran."""
    ran = [r for r in results if r.get("operating") is not None]
    return max(ran, key=score) if ran else None


@dataclass
class Budget:
    """Wall-clock budget of the whole search and an optional cap on configurations measured."""

    seconds: float
    first_guess_s: float  # cost of one configuration before any was measured
    max_configs: int | None = None
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=-1.0)
    spent: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def estimate(self) -> float:
        return max(self.spent) if self.spent else self.first_guess_s

    def refusal(self) -> str | None:
        """Why no further configuration may start (None: it may); the first one always may."""
        if self.max_configs is not None and len(self.spent) >= self.max_configs:
            return f"--configs {self.max_configs} reached"
        if self.spent and self.elapsed() + self.estimate() > self.seconds:
            return f"time budget ({self.seconds:.0f} s; {self.elapsed():.0f} s used, ~{self.estimate():.0f} s each)"
        return None


def search(measure: Measure, axes: Axes, variants: list[tuple[str, str | None]], budget: Budget,
           budget_ms: float, log: Callable[[str], None] = print) -> list[Result]:  # fmt: skip
    """Run the stages in order; every configuration tried or skipped is in the returned list."""
    results: list[Result] = []
    done: dict[str, Result] = {}
    incumbent = Candidate()
    for stage in STAGES:
        for cand in stage_candidates(stage, incumbent, axes, variants):
            if cand.key in done:
                continue
            why = budget.refusal()
            if why is not None:
                result: Result = {"status": "skipped", "reason": why, "points": []}
            else:
                t0 = budget.clock()
                result = measure(cand, stage)
                budget.spent.append(budget.clock() - t0)
                result["wall_s"] = round(budget.spent[-1], 1)
            result.update(key=cand.key, stage=stage, candidate=cand.as_dict())
            done[cand.key] = summarize(result, budget_ms)
            results.append(result)
        winner = best(results)
        if winner is not None:
            incumbent = Candidate(**winner["candidate"])
            log(f"after stage {stage!r}: best so far {incumbent.key} (meets budget: {winner['meets']})")
    return results
