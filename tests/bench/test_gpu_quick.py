"""``bench/gpu.sh --quick`` for real on this CPU: a Keras-on-JAX CNN repository, raw ``predict_on_batch``,
a real ``bentoml serve`` on the keras runtime driven over V2 binary, and the JSON it writes.

No speed thresholds (speed belongs in the report): the run must measure every batch on both sides without
errors, the service's answers must equal raw Keras on the same images, and both must name the same device.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
SIZES = [8, 32, 64]


def test_quick_gpu_bench_runs_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.run(
        [str(ROOT / "bench" / "gpu.sh"), "--quick", "--seconds", "0.5", "--concurrency", "2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads((out / "gpu.json").read_text())
    assert doc["quick"] is True and doc["concurrency"] == 2
    assert doc["device"] == doc["service_provider"] == "CPU:0"  # the runtime reports the device it runs on
    for side in ("raw", "service"):
        points = [p for p in doc["points"] if p["side"] == side]
        assert [p["batch"] for p in points] == SIZES, side
        for p in points:
            assert p["calls"] >= 1 and p["images_per_s"] > 0 and p["errors"] == 0, p
            assert 0 < p["p50_ms"] <= p["p99_ms"], p
            assert p["images_per_s"] == pytest.approx(p["calls"] * p["batch"] / p["seconds"], rel=1e-3)
    assert set(doc["ratios"]) == {str(n) for n in SIZES} and all(r > 0 for r in doc["ratios"].values())
    assert doc["target"] is None  # batch 1,024 is not part of the quick run
    for n in SIZES:
        assert doc["checks"][str(n)]["max_abs_diff"] <= 1e-5, doc["checks"]
        assert doc["checks"][str(n)]["argmax_agreement"] == 1.0, doc["checks"]
    assert set(doc["phases_s"]) == {"build_s", "raw_s", "server_start_s", "service_s"}
    assert "| batch | raw images/s |" in run.stdout and f"written: {out / 'gpu.json'}" in run.stdout


def test_missing_packages_are_named_with_what_to_do() -> None:
    """The pre-flight check on this machine finds everything; its message names the wheels step otherwise."""
    from bench.gpu import NEEDS, missing_packages

    assert missing_packages() == []
    assert {"bentoml", "keras", "jax", "tritonclient", "pydantic-settings"} <= set(NEEDS.values())
    pins = [line.split("==")[0] for line in (ROOT / "bench" / "gpu_wheels.txt").read_text().splitlines()
            if line and not line.startswith("#")]  # fmt: skip
    assert {"bentoml", "keras", "tritonclient", "pydantic-settings", "orjson", "httptools"} <= set(pins)
    assert len(pins) == len(set(pins))  # one version of each (two stop pip's install there)
