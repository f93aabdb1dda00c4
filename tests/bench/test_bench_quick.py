"""The benchmark harness in its quickest mode against our server (and the ONNX Runtime ceiling).

Checks the shape of ``results.json`` and that every point moved requests without errors; no speed
thresholds (this machine is shared, and speed belongs in the benchmark report, not in a test).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.synthetic import write_synthetic_cnn
from tests.server import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
SCENARIOS = {"native-json", "v2-json", "v2-binary-x64"}
CONCURRENCY = {1, 16, 64}


def test_quick_benchmark_of_our_server(tmp_path: Path) -> None:
    assert shutil.which("wrk"), "wrk is not installed (apt-get install wrk; ./run.sh test does)"
    repo = tmp_path / "repo"
    write_synthetic_cnn(repo)
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench", "--quick", "--servers", "ours", "--repo", str(repo), "--out", str(out),
           "--duration", "1", "--warmup", "0.5", "--no-wait-quiet"]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=85)
    assert run.returncode == 0, run.stderr[-3000:]

    doc = json.loads((out / "results.json").read_text())
    assert doc["model"]["input_name"] == "pixels" and doc["model"]["output_name"] == "probabilities"
    [ours] = doc["servers"]
    assert ours["server"] == "ours" and ours["status"] == "ok", ours.get("reason")
    points = ours["points"]
    assert {(p["scenario"], p["connections"]) for p in points} == {
        (s, c) for s in SCENARIOS for c in CONCURRENCY
    }
    for p in points:
        where = f"{p['scenario']} c={p['connections']}"
        assert p["requests"] > 0 and p["rps"] > 0, where
        assert p["non2xx"] == 0 and p["socket_errors"] == 0, where
        assert 0 < p["p50_ms"] <= p["p99_ms"], where
        assert p["images_per_s"] == pytest.approx(p["rps"] * p["images_per_request"]), where
        workers = [q for q in p["processes"] if q["name"].startswith("bentoml-worker")]
        assert len(workers) == 2 and all(q["rss_mb"] > 0 for q in workers), where
        assert p["server_cpu_pct"] > 0, where
    binary = [p for p in points if p["scenario"] == "v2-binary-x64"]
    assert all(p["images_per_request"] == 64 for p in binary)

    c1 = next(p for p in points if p["scenario"] == "native-json" and p["connections"] == 1)
    assert c1["server_side"]["count"] >= c1["requests"] > 0  # our histogram saw the run
    assert c1["server_side"]["p50_ms"] > 0

    assert [c["batch"] for c in doc["ceiling"]] == [1, 64]
    assert all(c["images_per_s"] > 0 and c["per_image_us"] > 0 for c in doc["ceiling"])
    assert doc["ratios"]["ours_rps"] > 0
    assert len(doc["targets"]) == 8 and all("verdict" in t for t in doc["targets"])
    assert doc["ours_memory"]["max_worker_rss_mb"] > 0

    report = (out / "report.md").read_text()
    for heading in ("## Results", "## Targets", "## Our service's memory", "## Ceilings"):
        assert heading in report
    for png in ("throughput.png", "latency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
