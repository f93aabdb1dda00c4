"""The tuner (``python -m bench tune``): one real run in its smallest mode against the quick-trained CNN
(real servers, real wrk), and its search, selection and report logic on synthetic measurements.

No speed thresholds: whether a configuration meets the budget is what the run measured; the test checks
that what the tuner says agrees with its own measurements and that its snippet is a valid serving.yaml.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.tune_measure import NotApplied, check_batches, write_repo
from bench.tune_report import noise_lines, snippet, verdict_lines
from bench.tune_search import Budget, best, closest_point, meets, operating_point, search, summarize
from bench.tune_space import (
    Axes,
    Candidate,
    _listed_precisions,
    accepts,
    discover_variants,
    stage_candidates,
)
from service.models.config import RepositoryConfig, load_config
from tests.server import ROOT

BUDGET_MS = 200.0  # generous, so the real run most likely meets it; both outcomes are checked


def _point(c: int, thr: float, p99: float, non2xx: int = 0, sock: int = 0) -> dict[str, Any]:
    return {"connections": c, "images_per_s": thr, "rps": thr, "p50_ms": p99 / 3, "p99_ms": p99,
            "non2xx": non2xx, "socket_errors": sock}  # fmt: skip


@pytest.mark.e2e
@pytest.mark.timeout(180)  # the trained_repo fixture may train first
def test_quick_tune_against_trained_cnn(trained_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    cmd = [sys.executable, "-m", "bench", "tune", "--model", "cnn", "--repo", str(trained_repo), "--quick",
           "--configs", "2", "--p99-ms", str(BUDGET_MS), "--concurrency", "4,16", "--duration", "1",
           "--warmup", "0.5", "--out", str(out)]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=80)
    assert run.returncode in (0, 3), run.stdout[-2000:] + run.stderr[-3000:]

    doc = json.loads((out / "tune.json").read_text())
    measured = [r for r in doc["configs"] if r["status"] != "skipped"]
    assert len(measured) == 2 and doc["measured"] == 2
    assert all(r["status"] == "ok" for r in measured), [r.get("reason") for r in measured]
    assert all(r["reason"] == "--configs 2 reached" for r in doc["configs"] if r["status"] == "skipped")
    for r in measured:
        cand = r["candidate"]
        assert r["verified"]["workers_ready"] == cand["workers"] and r["verified"]["runtime"] == "onnx"
        assert r["batches"]["calls"] > 0 and r["batches"]["largest_bucket"] <= cand["max_batch_size"]
        pts = r["points"]
        assert 1 <= len(pts) <= 2 and [p["connections"] for p in pts] == [4, 16][: len(pts)]
        assert all(p["requests"] > 0 for p in pts)
        assert all(meets(p, BUDGET_MS) for p in pts[:-1])  # the ladder stops after the first miss

    best_r = doc["best"]
    op = best_r["operating"]
    if run.returncode == 0:  # it says it met the budget: its operating point must
        assert doc["met"] and op["p99_ms"] <= BUDGET_MS and op["non2xx"] + op["socket_errors"] == 0
        others = [q for r in measured for q in r["points"] if meets(q, BUDGET_MS)]
        assert op["images_per_s"] == max(q["images_per_s"] for q in others)
        assert f"Best under p99 <= {BUDGET_MS:g} ms" in run.stdout
    else:
        assert not doc["met"] and "NO configuration meets" in run.stdout
        assert all(not meets(q, BUDGET_MS) for r in measured for q in r["points"])

    config = RepositoryConfig.model_validate(yaml.safe_load(doc["serving_yaml"]))
    assert config.models["cnn"].model_dump(exclude_unset=True) == Candidate(**best_r["candidate"]).policy()
    assert doc["serving_yaml"].strip() in run.stdout
    assert f"SERVING_WORKERS={best_r['candidate']['workers']}" in run.stdout
    report = (out / "tune.md").read_text()
    assert all(f"`{r['key']}`" in report for r in doc["configs"]) and "## Every point" in report
    assert (out / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_selection_needs_budget_and_zero_errors() -> None:
    pts = [_point(8, 1000, 5), _point(32, 3000, 20), _point(64, 3500, 24, non2xx=1), _point(128, 3600, 40)]
    assert operating_point(pts, 25)["connections"] == 32  # 64 has an error, 128 is over budget
    assert operating_point(pts, 4) is None
    assert closest_point(pts)["connections"] == 8
    assert closest_point([_point(8, 10, 1, sock=2), _point(16, 5, 30)])["connections"] == 16  # errors first


def _landscape(cand: Candidate, stage: str) -> dict[str, Any]:
    """A synthetic server: 2x1 is best, batch 32 best, waits cost latency; p99 grows with clients."""
    base = {(2, 1): 4000, (1, 1): 2500, (1, 2): 3000, (2, 2): 3500}[(cand.workers, cand.onnx_threads)]
    base *= {64: 1.0, 16: 0.8, 32: 1.1, 128: 0.95}[cand.max_batch_size]
    lat = 1 + cand.max_wait_ms * 10
    pts = [_point(c, base * min(1.0, c / 32), lat * c / 4) for c in (8, 32, 64)]
    return {"status": "ok", "points": pts}


AXES = Axes(((2, 1), (1, 1), (1, 2), (2, 2)), (64, 16, 32, 128), (0.0, 1.0, 2.0), (8, 32, 64))


def test_coordinate_descent_finds_the_best_and_reuses_measurements() -> None:
    calls: list[str] = []

    def measure(c: Candidate, stage: str) -> dict[str, Any]:
        calls.append(c.key)
        return _landscape(c, stage)

    results = search(measure, AXES, [], Budget(1e9, 1.0), budget_ms=10.0, log=lambda _: None)
    assert len(calls) == len(set(calls)) == 4 + 3 + 2 + 0  # the incumbent of each stage is not re-run
    winner = best(results)
    assert winner is not None and winner["meets"]
    assert Candidate(**winner["candidate"]) == Candidate(2, 1, 32, 0.0)
    assert winner["operating"]["connections"] == 32  # 64 clients: p99 16 ms > 10
    within = [r["operating"]["images_per_s"] for r in results if r["meets"]]
    assert winner["operating"]["images_per_s"] == max(within)


def test_budget_and_configs_cap_skip_the_rest() -> None:
    clock = iter(range(0, 10_000, 10))  # every clock read advances 10 s
    budget = Budget(45.0, 5.0, clock=lambda: float(next(clock)))  # each measurement "takes" 10 s
    results = search(_landscape, AXES, [], budget, 10.0, log=lambda _: None)
    ran = [r for r in results if r["status"] == "ok"]
    assert (
        len(ran) == 2
        and len(results) == 9
        and all(r["reason"].startswith("time budget") for r in results if r not in ran)
    )
    capped = search(_landscape, AXES, [], Budget(1e9, 1.0, max_configs=2), 10.0, log=lambda _: None)
    assert [r["status"] for r in capped][:3] == ["ok", "ok", "skipped"]
    assert {r["reason"] for r in capped[2:]} == {"--configs 2 reached"}


def test_nothing_meets_reports_the_closest() -> None:
    results = [summarize({"status": "ok", "points": [_point(8, 900, 30), _point(32, 2000, 80)],
                          "key": "a", "stage": "s", "candidate": Candidate().as_dict()}, 25),
               summarize({"status": "ok", "points": [_point(8, 700, 27)], "key": "b", "stage": "s",
                          "candidate": Candidate(workers=1).as_dict()}, 25),
               summarize({"status": "failed", "reason": "x", "points": [], "key": "c", "stage": "s",
                          "candidate": Candidate().as_dict()}, 25)]  # fmt: skip
    winner = best(results)
    assert winner is not None and winner["key"] == "b" and not winner["meets"]
    text, env = snippet("cnn", Candidate(**winner["candidate"]))
    doc = {
        "best": winner,
        "met": False,
        "budget_ms": 25,
        "unit": "req/s",
        "serving_yaml": text,
        "serving_env": env,
    }
    lines = verdict_lines(doc)
    assert lines[0].startswith("NO configuration meets p99 <= 25 ms") and "p99 27.00 ms" in lines[0]
    assert "SERVING_WORKERS=1" in "\n".join(lines).splitlines()


def test_snippet_and_repo_are_valid_serving_yaml(tmp_path: Path) -> None:
    version = tmp_path / "src" / "cnn" / "3"
    version.mkdir(parents=True)
    (version / "model.onnx").write_bytes(b"")
    model = type("M", (), {"name": "cnn", "version": 3, "onnx_path": version / "model.onnx"})()
    cand = Candidate(workers=1, onnx_threads=2, max_batch_size=32, max_wait_ms=0.5)
    repo = write_repo(tmp_path / "cfg", model, cand)  # type: ignore[arg-type]
    assert (repo / "cnn" / "3").resolve() == version.resolve()
    policy = load_config(repo).policy("cnn")
    assert (policy.max_batch_size, policy.max_wait_ms, policy.runtime) == (32, 0.5, "onnx")
    text, env = snippet("cnn", cand)
    assert RepositoryConfig.model_validate(yaml.safe_load(text)).models["cnn"] == policy
    assert env.splitlines() == ["SERVING_WORKERS=1", "SERVING_ONNX_THREADS=2"]


def test_batch_cap_check() -> None:
    cum = {1.0: 2.0, 2.0: 5.0, 4.0: 9.0, 8.0: 10.0, 16.0: 10.0, math.inf: 10.0}
    assert check_batches(cum, 30.0, 8) == {"calls": 10, "mean_rows": 3.0, "largest_bucket": 8.0}
    with pytest.raises(NotApplied, match="max_batch_size 4 did not apply"):
        check_batches(cum, 30.0, 4)
    with pytest.raises(NotApplied, match="no batch"):
        check_batches({math.inf: 0.0}, 0.0, 4)


def test_variants_found_only_where_they_exist(tmp_path: Path) -> None:
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps({"variants": {"int8": {"exported": False, "reason": "accuracy gate"}}}))
    (tmp_path / "model.int8.onnx").write_bytes(b"")  # a stale file the metadata disowns
    assert _listed_precisions(json.loads(meta.read_text()), tmp_path) == set()
    pairs, notes = discover_variants(tmp_path, bf16=False)
    assert all(p is None for _, p in pairs) and "variant int8 not exported: accuracy gate" in notes
    meta.write_text(json.dumps({"variants": {"int8": {"exported": True, "file": "model.int8.onnx"}}}))
    pairs, notes = discover_variants(tmp_path, bf16=False)
    assert (("onnx", "int8") in pairs) == accepts(runtime="onnx", precision="int8")
    if ("openvino", None) in pairs:  # openvino imports and the schema takes it
        assert ("openvino", "int8") in pairs and ("openvino", "bf16") not in pairs
        assert any("no bf16" in n for n in notes)
        assert ("openvino", "bf16") in discover_variants(tmp_path, bf16=True)[0]
    else:
        assert any("openvino" in n for n in notes)
    stage = stage_candidates("precision/runtime", Candidate(max_batch_size=32), AXES, [("onnx", "int8")])
    assert [(c.runtime, c.precision, c.max_batch_size) for c in stage] == [
        ("onnx", None, 32),
        ("onnx", "int8", 32),
    ]


def test_busy_machine_is_flagged() -> None:
    quiet = {"configs": [{"points": [{**_point(4, 100, 5), "other_cpu_pct": 3.0}]}]}
    assert noise_lines(quiet) == []
    busy = {
        "configs": [
            {"points": [{**_point(4, 100, 5), "other_cpu_pct": o} for o in (10.0, 90.0)]},
            {"points": []},
        ]
    }
    [line] = noise_lines(busy)
    assert "50 % of a core on average" in line and "up to 90 %" in line and "1 of 2 points" in line
