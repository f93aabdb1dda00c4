"""``python -m bench tune``: turn a p99 latency budget into a serving configuration, by measuring.

Sweeps workers x ONNX Runtime intra-op threads, then ``max_batch_size``, then ``max_wait_ms``, then the
precision/runtime variants the model version has (coordinate descent: each stage around the best so
far; see :mod:`bench.tune_search`), starting a real server per configuration and driving it with wrk at
rising client counts. Prints the best configuration under the budget as a ``serving.yaml`` snippet plus
the ``SERVING_*`` environment, and writes ``tune.json``, ``tune.md`` and ``tune.png`` into ``--out``.

Exit codes: 0 a configuration meets the budget; 3 none does (the closest is printed); 1 no configuration
could be measured at all; 2 bad arguments or a missing tool/model.

Examples::

    .venv/bin/python -m bench tune --model cnn --p99-ms 25                  # ~10 min budget
    .venv/bin/python -m bench tune --model cnn --p99-ms 25 --quick          # ~2 min, 2 s points
    .venv/bin/python -m bench tune --p99-ms 50 --scenario v2-binary --budget-s 300 --out /tmp/tune
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import tune_report
from bench.bodies import find_model, write_scenarios
from bench.config import BATCH_IMAGES, BENCH, ROOT
from bench.procs import foreign_busy_processes
from bench.tune_measure import Setup, measure
from bench.tune_search import BEST_RULE, Budget, best, search
from bench.tune_space import STAGES, Axes, Candidate, default_axes, discover_variants
from bench.wrk import write_script, wrk_available

SCENARIOS = {"json": "native-json", "v2-json": "v2-json", "v2-binary": f"v2-binary-x{BATCH_IMAGES}"}
EXIT_MET, EXIT_NOTHING_RAN, EXIT_SETUP, EXIT_NOT_MET = 0, 1, 2, 3


def log(msg: str) -> None:
    print(f"[tune {dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(sorted({int(x) for x in text.split(",")}))


def _pairs(text: str) -> tuple[tuple[int, int], ...]:
    """``2x1,1x2`` -> ((2, 1), (1, 2)): workers x threads."""
    return tuple((int(w), int(t)) for w, t in (x.split("x") for x in text.split(",")))


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench tune", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--version", type=int, help="model version (default: the newest)")
    ap.add_argument("--repo", type=Path, default=ROOT / "models", help="model repository (default models/)")
    ap.add_argument("--p99-ms", type=float, default=25.0, help="latency budget: client-side p99 (default 25)")
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="json",
                    help="json: native API, one image; v2-binary: 64 images per request")  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="small grid, 2 s points, ~2 min budget")
    ap.add_argument(
        "--budget-s", type=float, help="time budget of the whole search (default 600; --quick 120)"
    )
    ap.add_argument("--configs", type=int, help="measure at most this many configurations")
    ap.add_argument("--concurrency", type=_ints, help="client counts per configuration, rising (comma list)")
    ap.add_argument("--workers-threads", type=_pairs, help="stage 1 pairs, e.g. 2x1,1x2,2x2")
    ap.add_argument("--batch-sizes", type=_ints, help="stage 2 max_batch_size values (comma list)")
    ap.add_argument(
        "--waits", type=lambda s: tuple(float(x) for x in s.split(",")), help="stage 3 max_wait_ms values"
    )
    ap.add_argument("--duration", type=float, help="seconds per measured point (default 3; --quick 2)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds before each point (default 1; --quick 0.5)")
    ap.add_argument("--out", type=Path, help="results folder (default bench/results/<date>-tune)")
    a = ap.parse_args(argv)
    if (
        a.p99_ms <= 0
        or (a.configs is not None and a.configs < 1)
        or (a.budget_s is not None and a.budget_s <= 0)
    ):
        ap.error("need --p99-ms > 0, --configs >= 1 and --budget-s > 0")  # fmt: skip
    return a


def axes_for(a: argparse.Namespace) -> Axes:
    d = default_axes(a.scenario, a.quick)
    return Axes(a.workers_threads or d.workers_threads, a.batch_sizes or d.batch_sizes, a.waits or d.waits_ms,
                a.concurrency or d.concurrency)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    a = parse_args(given)
    if not wrk_available():
        log("wrk and taskset are needed (apt-get install wrk)")
        return EXIT_SETUP
    try:
        model = find_model(a.repo, a.model, a.version)
    except FileNotFoundError as e:
        log(f"{e} (train one: python -m training train --models {a.model} --repo {a.repo})")
        return EXIT_SETUP
    axes = axes_for(a)
    warmup = a.warmup if a.warmup is not None else (0.5 if a.quick else 1.0)
    duration = a.duration if a.duration is not None else (2.0 if a.quick else 3.0)
    out = a.out or BENCH / "results" / f"{dt.date.today().isoformat()}-tune"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tune-"))
    scenario = write_scenarios(model, work / "bodies")[SCENARIOS[a.scenario]]
    variants, notes = discover_variants(model.onnx_path.parent)
    for n in notes:
        log(f"note: {n}")
    setup = Setup(model, scenario, write_script(scenario, work), axes.concurrency, warmup, duration, a.p99_ms,
                  work, log)  # fmt: skip
    budget = Budget(a.budget_s or (120.0 if a.quick else 600.0), 15.0 + len(axes.concurrency) * (warmup + duration),
                    a.configs)  # fmt: skip
    load1_start, foreign = round(os.getloadavg()[0], 2), foreign_busy_processes()
    log(f"{model.name} v{model.version}, {a.scenario}, p99 <= {a.p99_ms:g} ms, budget {budget.seconds:.0f} s; "
        f"clients {axes.concurrency}; variants {variants or 'none'}")  # fmt: skip
    try:
        results = search(lambda c, st: measure(c, st, setup), axes, variants, budget, a.p99_ms, log)
        again = repeat_winner(best(results), setup, budget)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = document(a, given, model, scenario.images_per_request, axes, results, notes, budget,
                   {"load1_start": load1_start, "foreign": foreign}, warmup, duration)  # fmt: skip
    doc["repeat"] = again
    doc["plot"] = tune_report.plot(doc, out)
    (out / "tune.json").write_text(json.dumps(doc, indent=1, default=str))
    (out / "tune.md").write_text(tune_report.render(doc))
    print(
        "\n".join(
            [*tune_report.verdict_lines(doc), *tune_report.repeat_lines(doc), *tune_report.noise_lines(doc)]
        )
    )
    print(f"report: {out / 'tune.md'}")
    if doc["best"] is None:
        return EXIT_NOTHING_RAN
    return EXIT_MET if doc["met"] else EXIT_NOT_MET


def repeat_winner(winner: dict[str, Any] | None, setup: Setup, budget: Budget) -> dict[str, Any] | None:
    """Measure the winner once more (fresh server, its operating client count) when the budget allows:
    the run-to-run spread on this machine, and whether its p99 held."""
    if winner is None or not winner["meets"] or budget.refusal() is not None:
        return None
    op = winner["operating"]
    log(f"repeat of the winner {winner['key']} at {op['connections']} clients")
    again = measure(
        Candidate(**winner["candidate"]), "repeat", replace(setup, concurrency=(op["connections"],))
    )
    if again["status"] != "ok" or not again["points"]:
        return {"key": winner["key"], "status": again["status"], "reason": again.get("reason")}
    p = again["points"][0]
    return {"key": winner["key"], "status": "ok", "connections": op["connections"], "images_per_s": p["images_per_s"],
            "p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"], "errors": p["errors"],
            "change_pct": round(100 * (p["images_per_s"] / op["images_per_s"] - 1), 1),
            "held": p["errors"] == 0 and p["p99_ms"] <= setup.budget_ms}  # fmt: skip


def document(a: argparse.Namespace, argv: list[str], model: Any, images: int, axes: Axes, results: list[dict[str, Any]],
             notes: list[str], budget: Budget, machine: dict[str, Any], warmup: float, duration: float) -> dict[str, Any]:  # fmt: skip
    """Everything ``tune.json`` holds; the report and the plot are drawn from it."""
    from bench.__main__ import environment

    winner = best(results)
    cand = Candidate(**winner["candidate"]) if winner is not None else Candidate()
    serving_yaml, serving_env = tune_report.snippet(model.name, cand)
    env = {**environment({"checked": False}), **machine, "load1_end": round(os.getloadavg()[0], 2)}
    return {
        "command": shlex.join([Path(sys.executable).name, "-m", "bench", "tune", *argv]),
        "model": {"name": model.name, "version": model.version, "onnx_path": str(model.onnx_path)},
        "scenario": a.scenario, "images_per_request": images, "unit": "images/s" if images > 1 else "req/s",
        "budget_ms": a.p99_ms, "rule": BEST_RULE, "stages": list(STAGES),
        "axes": {"workers_threads": axes.workers_threads, "batch_sizes": axes.batch_sizes,
                 "waits_ms": axes.waits_ms, "concurrency": axes.concurrency},
        "points_per_config": f"client counts {', '.join(map(str, axes.concurrency))} (stopping after the first over budget)",
        "warmup_s": warmup, "duration_s": duration, "time_budget_s": budget.seconds,
        "elapsed_s": round(budget.elapsed(), 1), "measured": len(budget.spent), "notes": notes,
        "environment": env, "configs": results, "best": winner, "met": bool(winner and winner["meets"]),
        "serving_yaml": serving_yaml if winner else "", "serving_env": serving_env if winner else "",
    }  # fmt: skip
