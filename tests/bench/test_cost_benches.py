"""The cost benchmarks in their shortest form (``python -m bench.tracing_cost``, ``python -m bench.ops_cost``,
``python -m bench.off_cost``): every server answers without errors, its CPU time per request is measured,
and the feature under test really works during the run (the traced server exports to the bench's OTLP
sink; the ops server mirrors and captures; the older commit runs from its own worktree). No speed
thresholds: the figures are the benches' to print."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.synthetic import write_synthetic_cnn
from tests.server import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


def run_bench(module: str, tmp_path: Path, *extra: str) -> tuple[dict[str, Any], str]:
    """``module`` over the synthetic CNN, one short round: its JSON document and its stdout."""
    assert shutil.which("wrk"), "wrk is not installed (apt-get install wrk; ./run.sh test does)"
    write_synthetic_cnn(tmp_path / "repo")
    out = tmp_path / "cost.json"
    cmd = [sys.executable, "-m", module, "--repo", str(tmp_path / "repo"), "--rounds", "1", "--duration", "1",
           "--warmup", "0.5", "--workers", "1", "--concurrency", "4", "--json", str(out), *extra]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=140)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    doc = json.loads(out.read_text())
    for mode, (result,) in doc["runs"].items():
        assert result["requests"] > 0 and result["non2xx"] == 0 and result["socket_errors"] == 0, mode
        assert result["server_cpu_s"] > 0 and result["cpu_us_per_request"] > 0, mode
    return doc, run.stdout


def test_tracing_cost_bench_runs_off_and_on(tmp_path: Path) -> None:
    doc, stdout = run_bench("bench.tracing_cost", tmp_path)
    assert set(doc["runs"]) == {"off", "on@1"}
    assert doc["exports"] > 0 and doc["export_bytes"] > 0
    assert "on@1 vs off:" in stdout


def test_ops_cost_bench_runs_plain_and_ops(tmp_path: Path) -> None:
    doc, stdout = run_bench("bench.ops_cost", tmp_path, "--capture-percent", "100", "--shadow-percent", "50")
    assert set(doc["runs"]) == {"plain", "ops"}
    assert doc["shadow_requests"] > 0
    # capture at 100 %: every measured answer (and the warm-up's) written, or dropped and counted
    requests = doc["runs"]["ops"][0]["requests"]
    assert doc["captured"] > 0 and doc["captured"] + doc["capture_dropped"] >= requests
    assert "ops vs plain:" in stdout and "budget: ops within 10%" in stdout


def test_off_cost_bench_runs_an_older_commit_beside_this_tree(tmp_path: Path) -> None:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    doc, stdout = run_bench("bench.off_cost", tmp_path, "--against", head)
    assert set(doc["runs"]) == {head, "off", "default"}
    assert f"off vs {head}:" in stdout and "round by round" in stdout
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "off-cost-" not in worktrees  # the older commit's worktree is removed afterwards
