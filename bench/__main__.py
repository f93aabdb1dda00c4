"""``python -m bench``: start each server in turn, drive it with wrk, write the report.

Examples::

    .venv/bin/python -m bench                          # everything, ~10 s points, models/cnn/<latest>
    .venv/bin/python -m bench --quick --servers ours   # smoke run: ~2 s points
    .venv/bin/python -m bench --servers ours,bare-asgi --duration 5 --out /tmp/b
    .venv/bin/python -m bench soak --requests 200000   # soak run (bench/soak.py; its own options)
    .venv/bin/python -m bench overload                 # goodput from 0.5x to 4x saturation, with peers
    .venv/bin/python -m bench precision                # accuracy, images/s per runtime x precision
    .venv/bin/python -m bench tune --p99-ms 25         # best serving.yaml under a p99 budget (bench/tune.py)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import analysis, config, plots, report
from bench.bodies import find_model, write_scenarios
from bench.ceiling import ort_ceiling
from bench.procs import wait_quiet
from bench.runner import run_server
from bench.servers import SERVERS, Launch
from bench.wrk import write_script, wrk_available


def log(msg: str) -> None:
    print(f"[bench {dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> tuple[config.BenchConfig, argparse.Namespace]:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--repo", type=Path, default=config.ROOT / "models", help="model repository (default models/)"
    )
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--version", type=int, help="model version (default: the newest)")
    ap.add_argument(
        "--servers", default=",".join(config.ALL_SERVERS), help="comma list of " + ", ".join(SERVERS)
    )
    ap.add_argument("--concurrency", default="1,16,64", help="comma list of wrk connection counts")
    ap.add_argument("--duration", type=float, help="seconds per measured point (default 10; --quick 2)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds before each point (default 3; --quick 1)")
    ap.add_argument("--quick", action="store_true", help="smoke run: short points, no profiling")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the in-process ONNX Runtime ceiling")
    ap.add_argument("--no-profile", action="store_true", help="skip py-spy on our workers")
    ap.add_argument("--no-wait-quiet", action="store_true", help="do not wait for a quiet machine first")
    ap.add_argument(
        "--workers", type=int, default=2, help="worker processes for servers that have the setting"
    )
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="results folder (default bench/results/<date>)")
    ap.add_argument("--notes", type=Path, help="markdown appended to the report as its Analysis section")
    ap.add_argument(
        "--from-json", type=Path, help="measure nothing: rebuild report and plots from a results.json"
    )
    a = ap.parse_args(argv)
    unknown = set(a.servers.split(",")) - set(SERVERS)
    if unknown:
        ap.error(f"unknown server(s) {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    kw: dict[str, Any] = {
        "repo": a.repo, "model": a.model, "version": a.version, "servers": tuple(a.servers.split(",")),
        "concurrency": tuple(int(c) for c in a.concurrency.split(",")), "ort_ceiling": not a.no_ceiling,
        "wait_quiet": not a.no_wait_quiet, "workers": a.workers, "wrk_threads": a.wrk_threads,
    }  # fmt: skip
    if a.duration is not None:
        kw["duration_s"] = a.duration
    if a.warmup is not None:
        kw["warmup_s"] = a.warmup
    if a.out is not None:
        kw["out"] = a.out
    cfg = config.quick_config(**kw) if a.quick else config.BenchConfig(**kw)
    cfg.profile = cfg.profile and not a.no_profile
    return cfg, a


def environment(quiet: dict[str, Any]) -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=config.ROOT, capture_output=True, text=True
    )
    return {"date": dt.date.today().isoformat(), "started": dt.datetime.now().isoformat(timespec="seconds"),
            "cpu": cpu, "cores": os.cpu_count(), "mem_gb": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30),
            "python": platform.python_version(), "commit": commit.stdout.strip() or "?", "quiet": quiet}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["overload"]:  # ``python -m bench overload ...``: bench/overload_cli.py
        from bench.overload_cli import main as overload_main

        return overload_main(given[1:])
    if given[:1] == ["tune"]:  # ``python -m bench tune ...``: SLO -> serving.yaml (bench/tune.py)
        from bench.tune import main as tune_main

        return tune_main(given[1:])
    if given[:1] == ["precision"]:  # ``python -m bench precision``: accuracy and images/s per precision
        from bench.precision import main as precision_main

        return precision_main(given[1:])
    if given[:1] == ["soak"]:  # ``python -m bench soak ...``: the soak run of bench/soak.py
        from bench.soak import main as soak_main

        return soak_main(given[1:])
    cfg, args = parse_args(argv)
    if args.from_json:  # re-render an earlier run (report format changes, added notes)
        return finish(json.loads(args.from_json.read_text()), args.out or args.from_json.parent, args.notes)
    if not wrk_available():
        log("wrk and taskset are needed (apt-get install wrk)")
        return 2
    model = find_model(cfg.repo, cfg.model, cfg.version)
    cfg.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    scenarios = write_scenarios(model, work / "bodies")
    log(f"model {model.name} v{model.version} ({model.onnx_path}); results -> {cfg.out}")
    quiet: dict[str, Any] = {"checked": False}
    if cfg.wait_quiet:
        quiet = wait_quiet(cfg.quiet_load, cfg.quiet_timeout_s, log)
        log(f"machine: {quiet}")
    doc: dict[str, Any] = {"command": shlex.join([Path(sys.executable).name, "-m", "bench", *(argv or sys.argv[1:])]),
                           "config": cfg.as_dict(), "model": {**model.__dict__, "onnx_path": str(model.onnx_path)},
                           "environment": environment(quiet), "servers": []}  # fmt: skip
    if cfg.ort_ceiling:
        doc["ceiling"] = ort_ceiling(model, seconds=min(cfg.duration_s, 3.0))
        for c in doc["ceiling"]:
            log(
                f"ONNX Runtime batch {c['batch']}: {c['per_image_us']:.1f} µs/image, {c['images_per_s']:,.0f} images/s"
            )

    def profile_hook(launch: Launch, result: dict[str, Any]) -> None:
        from bench.profiling import profile_server

        for name in ("native-json", f"v2-binary-x{config.BATCH_IMAGES}"):
            sc = scenarios[name]
            log(f"profiling ours under {name} at 64 connections …")
            prof = profile_server(launch, sc, write_script(sc, work / "ours"), cfg, work / "ours" / name)
            doc.setdefault("profiles", []).append(prof)

    for name in cfg.servers:
        hook = profile_hook if (name == "ours" and cfg.profile) else None
        doc["servers"].append(run_server(SERVERS[name], model, scenarios, cfg, work / name, log, hook))
    for prof in doc.get("profiles", []):
        for w in prof.get("workers", []):
            src = work / "ours" / prof["scenario"] / w["raw_file"]
            if src.is_file():
                (cfg.out / "profiles").mkdir(exist_ok=True)
                shutil.copy(src, cfg.out / "profiles" / w["raw_file"])
    shutil.rmtree(work, ignore_errors=True)
    return finish(doc, cfg.out, args.notes)


def finish(doc: dict[str, Any], out: Path, notes: Path | None) -> int:
    """Ratios, targets, plots, ``results.json`` and ``report.md`` from the measured ``doc``."""
    doc["ratios"] = analysis.ratios(doc["servers"], 64)
    doc["ratios_int8"] = analysis.ratios(doc["servers"], 64, analysis.INT8)
    doc["targets"] = analysis.targets(doc["servers"])
    doc["ours_memory"] = analysis.ours_memory(doc["servers"])
    doc["plots"] = plots.plot_all(doc["servers"], out)
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=str))
    (out / "report.md").write_text(report.render(doc, notes.read_text() if notes else ""))
    print("\n".join(report.ratio_lines(doc["ratios"])))
    for t in doc["targets"]:
        print(f"{t['target']}: {t['verdict']}")
    print(f"report: {out / 'report.md'}")
    ours = next((s for s in doc["servers"] if s["server"] == "ours"), None)
    return 1 if ours is not None and ours["status"] != "ok" else 0


if __name__ == "__main__":
    sys.exit(main())
