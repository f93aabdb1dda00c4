"""The report's targets and ratios, computed from a results document written here by hand.

The figures are inputs, not measurements: the test checks the arithmetic and the verdicts, and that the
int8 variant's targets appear beside fp32's only when it was measured.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import analysis
from bench import config as C


def _point(scenario: str, c: int, rps: float, p50: float, p99: float, images: int = 1) -> dict[str, Any]:
    return {"scenario": scenario, "connections": c, "rps": rps, "images_per_s": rps * images,
            "images_per_request": images, "p50_ms": p50, "p99_ms": p99, "non2xx": 0, "socket_errors": 0,
            "server_rss_mb": 900.0, "processes": [{"name": "bentoml-worker-1", "rss_mb": 450.0}]}  # fmt: skip


def _ours(name: str, rps64: float, binary_rps: float, p50_c1: float) -> dict[str, Any]:
    return {"server": name, "status": "ok", "points": [
        _point("native-json", 64, rps64, 8.0, 14.0), _point("native-json", 1, 1700.0, p50_c1, 1.2),
        _point(analysis.BINARY, 16, binary_rps, 12.0, 25.0, images=64)]}  # fmt: skip


PYTRITON = {"server": "pytriton", "status": "ok", "points": [_point("v2-json", 64, 2500.0, 20.0, 40.0)]}


def test_fp32_targets_alone_when_the_variant_was_not_measured() -> None:
    rows = analysis.targets([_ours("ours", 7800.0, 1100.0, 0.57), PYTRITON])
    assert len(rows) == 8 and not any("(int8)" in r["target"] for r in rows)
    by = {r["target"]: r for r in rows}
    assert by["CNN single image JSON, 64 clients: throughput"]["met"] is False
    assert by["CNN single image JSON, 64 clients: throughput"]["goal"] == C.TARGET_RPS_64 == 9000
    assert by["ours / PyTriton at 64 clients"]["value"] == pytest.approx(7800 / 2500)
    assert by["V2 binary, 64 images/request"]["value"] == pytest.approx(1100 * 64)
    c1 = by["concurrency 1: client-side p50 (wrk)"]
    assert (c1["value"], c1["goal"], c1["met"]) == (0.57, 0.5, False)


def test_the_int8_variant_gets_its_own_rows_and_ratios() -> None:
    servers = [_ours("ours", 7800.0, 1100.0, 0.57), _ours(analysis.INT8, 8400.0, 1380.0, 0.49), PYTRITON]
    rows = analysis.targets(servers)
    int8 = {r["target"]: r for r in rows if r["target"].endswith("(int8)")}
    assert len(rows) == 15 and len(int8) == 7, "every target but memory, once more"
    assert int8["V2 binary, 64 images/request (int8)"]["met"] is True  # 88,320 >= 85,000
    assert int8["concurrency 1: client-side p50 (wrk) (int8)"]["met"] is True
    assert int8["ours / PyTriton at 64 clients (int8)"]["value"] == pytest.approx(8400 / 2500)
    assert analysis.ratios(servers, 64, analysis.INT8)["ours_rps"] == 8400.0
    assert analysis.ratios(servers, 64)["ours_rps"] == 7800.0
    assert "ours_v2_json_over_pytriton" not in analysis.ratios(servers, 64, analysis.INT8), "no V2 JSON point"
