"""What the model-operations features cost when they are off: our server against a commit from before them.

``python -m bench.off_cost --against COMMIT`` checks ``COMMIT`` out into a temporary git worktree (the
same venv runs it) and starts three of our servers side by side (:mod:`bench.sidebyside`) over copies of
the same CNN (the CNN of ``--repo``, else the synthetic CNN):

- ``COMMIT``: the older code;
- ``off``: this tree with every optional feature off: no traffic split, shadow, capture or feedback in
  ``serving.yaml`` (none is on by default), tracing off (the default) and ``SERVING_DRIFT_ENABLED=false``;
- ``default``: this tree as shipped, so drift detection on (the model's ``metadata.json`` has a
  ``reference``, which the older code ignores).

wrk drives them in rotating turns with the single-image native JSON request; the command prints req/s,
p99 and the server's CPU time per request per mode, and each mode's change against ``COMMIT``. Request
ids are not optional (every answer echoes one), so ``off`` pays for them.

Example::

    .venv/bin/python -m bench.off_cost --against 444e7cf --rounds 4 --duration 5
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from bench import sidebyside
from bench.config import ROOT
from bench.sidebyside import errors, report, run_rounds, save_json, start_server, stop_all, wait_all


def worktree(commit: str, target: Path) -> Path:
    """``commit`` checked out (detached) at ``target``; :func:`remove_worktree` takes it away."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), commit],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return target


def remove_worktree(target: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(target)], check=False)


def main(argv: list[str] | None = None) -> int:
    ap = sidebyside.parser("python -m bench.off_cost", __doc__)
    ap.add_argument("--against", required=True, help="the older commit (any git revision)")
    ap.add_argument("--json", type=Path, help="also write the runs and medians here")
    a = ap.parse_args(argv)
    ready = sidebyside.setup(a, "off-cost-")
    if ready is None:
        return 2
    work, model, scenario, script = ready
    version_dir = model.onnx_path.parent
    repos = {}
    for mode in ("old", "off", "default"):
        repos[mode] = work / f"{mode}-repo"
        shutil.copytree(version_dir, repos[mode] / model.name / version_dir.name)
    old = worktree(a.against, work / "old-code")
    try:
        servers = {
            a.against: start_server(repos["old"], work / "old", a.workers, old),
            "off": start_server(
                repos["off"], work / "off", a.workers, SERVING_TRACING="off", SERVING_DRIFT_ENABLED="false"
            ),
            "default": start_server(repos["default"], work / "default", a.workers),
        }
        try:
            wait_all(servers, scenario)
            print(
                f"model {model.name} v{model.version}, native JSON, {a.concurrency} connections, "
                f"{a.workers} workers per server, {a.rounds} x {a.duration:g} s per mode; {a.against} "
                f"against this tree with the features off and as shipped"
            )
            runs = run_rounds(servers, scenario, script, a.rounds, a.concurrency, a.duration, a.warmup)
        finally:
            stop_all(servers)
    finally:
        remove_worktree(old)
    medians = report(runs)
    if a.json:
        save_json(a.json, a, medians, runs)
    return 1 if errors(runs) else 0


if __name__ == "__main__":
    sys.exit(main())
