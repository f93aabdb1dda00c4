"""What model operations cost: single-image CNN throughput with payload capture and shadow traffic on.

``python -m bench.ops_cost`` starts our servers side by side (:mod:`bench.sidebyside`), each over its own
copy of the same two CNN versions (the CNN of ``--repo``, else the synthetic CNN of :mod:`bench.synthetic`,
as versions 1 and 2):

- ``plain``: ``serving.yaml`` serves both versions and nothing else;
- ``ops``: the same, plus ``capture: {percent: 1}`` and ``shadow: {target: 1, percent: 10}`` (the answers
  of version 2, the default, are captured at 1 % and mirrored at 10 % to version 1).

wrk drives them with the native JSON single-image request in rotating turns, ``--rounds`` times. Besides
req/s and p99 per mode, the command prints what the features did during the run (mirrored requests,
drops by reason, captured lines), so a figure is never that of a feature that was not working. The
issue's budget: ``ops`` within 10 % of ``plain`` (medians of the same run).

Example::

    .venv/bin/python -m bench.ops_cost --rounds 3 --duration 5 --concurrency 16
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from bench import sidebyside
from bench.sidebyside import errors, report, run_rounds, save_json, start_server, stop_all, wait_all
from service.client import compare

BUDGET = 0.10
"""The most the ops mode may lose in median req/s against plain."""


def write_repo(version_dir: Path, name: str, target: Path, extra: str) -> Path:
    """``version_dir`` as versions 1 and 2 of ``name`` under ``target``, both served, ``extra`` added to
    the model's ``serving.yaml`` entry."""
    for version in (1, 2):
        copy = target / name / str(version)
        shutil.copytree(version_dir, copy)
        meta = json.loads((copy / "metadata.json").read_text())
        (copy / "metadata.json").write_text(json.dumps({**meta, "version": version}))
    (target / "serving.yaml").write_text(f"models:\n  {name}:\n    policy: all\n{extra}")
    return target


def main(argv: list[str] | None = None) -> int:
    ap = sidebyside.parser("python -m bench.ops_cost", __doc__)
    ap.add_argument("--capture-percent", type=float, default=1.0)
    ap.add_argument("--shadow-percent", type=float, default=10.0)
    ap.add_argument("--json", type=Path, help="also write the runs, medians and feature counts here")
    a = ap.parse_args(argv)
    ready = sidebyside.setup(a, "ops-cost-")
    if ready is None:
        return 2
    work, model, scenario, script = ready
    version_dir = model.onnx_path.parent
    plain = write_repo(version_dir, model.name, work / "plain-repo", "")
    features = f"    capture: {{percent: {a.capture_percent:g}}}\n" if a.capture_percent > 0 else ""
    if a.shadow_percent > 0:
        features += f"    shadow: {{target: 1, percent: {a.shadow_percent:g}}}\n"
    ops = write_repo(version_dir, model.name, work / "ops-repo", features)
    capture_dir = work / "capture"
    servers = {
        "plain": start_server(plain, work / "plain", a.workers),
        "ops": start_server(ops, work / "ops", a.workers, SERVING_CAPTURE_DIR=str(capture_dir)),
    }
    try:
        wait_all(servers, scenario)
        print(f"model {model.name} (versions 1 and 2), native JSON, {a.concurrency} connections, "
              f"{a.workers} workers per server, {a.rounds} x {a.duration:g} s per mode; ops: capture "
              f"{a.capture_percent:g} %, shadow {a.shadow_percent:g} % to version 1")  # fmt: skip
        runs = run_rounds(servers, scenario, script, a.rounds, a.concurrency, a.duration, a.warmup)
        samples = compare.model_samples(compare.scrape(servers["ops"][1]), model.name)
    finally:
        stop_all(servers)  # the capture writers close their files at shutdown
    medians = report(runs)
    captured = sum(len(p.read_bytes().splitlines()) for p in capture_dir.glob("*.jsonl*"))
    mirrored = sum(compare.by(samples, "serving_shadow_requests_total").values())
    dropped = {r: v for (r,), v in compare.by(samples, "serving_shadow_dropped_total", "reason").items() if v}
    capture_dropped = sum(compare.by(samples, "serving_capture_dropped_total").values())
    print(f"ops mode did: {mirrored:.0f} shadow requests, shadow drops {dropped or 'none'}, "
          f"{captured} captured answers, capture drops {capture_dropped:.0f}")  # fmt: skip
    change = medians["ops"]["change"]
    print(
        f"budget: ops within {BUDGET:.0%} of plain: {'yes' if change >= -BUDGET else 'NO'} ({100 * change:+.1f} %)"
    )
    if a.json:
        save_json(a.json, a, medians, runs, shadow_requests=mirrored, shadow_dropped=dropped, captured=captured,
                  capture_dropped=capture_dropped)  # fmt: skip
    return 1 if errors(runs) or mirrored == 0 or captured == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
