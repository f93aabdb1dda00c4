"""``serving-cli compare``'s parts: quantiles checked against real Prometheus (promtool evaluates
``histogram_quantile`` on the same buckets), the report and verdicts over the server's real metric
objects and exposition text, the text rendering, and the command's errors."""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

from service.client.cli import main
from service.client.compare import Rules, model_samples, parse_window, quantile, render, report
from service.metrics import LATENCY_BUCKETS, get_metrics
from tests.server import free_port

PROMTOOL_TEST = """rule_files: []
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
{series}
    promql_expr_test:
{checks}
"""


@pytest.mark.parametrize(
    "counts",
    [
        {0.005: 90, 0.05: 100},  # most in one bucket, a tail
        {0.001: 10, 0.002: 10, 0.01: 60, 0.1: 95, 1.0: 99, 10.0: 100},
        {0.0005: 0, 0.2: 3},  # few observations
        {0.01: 50, float("inf"): 100},  # half above the last finite bound
    ],
)
def test_quantiles_match_prometheus_histogram_quantile(tmp_path: Path, counts: dict[float, int]) -> None:
    """promtool evaluates ``histogram_quantile`` over the same buckets; its answers (listed as "got" when
    the deliberately impossible expectation -1 fails) must equal ours (to rounding: its input is a rate)."""
    buckets = dict(sorted({**counts, float("inf"): max(counts.values())}.items()))
    quantiles = (0.5, 0.9, 0.99)
    series = "\n".join(
        f"      - series: 'h_bucket{{le=\"{'+Inf' if le == float('inf') else le}\"}}'\n        values: '0+{n}x10'"
        for le, n in buckets.items()
    )
    checks = "\n".join(
        f"      - expr: histogram_quantile({q}, rate(h_bucket[5m]))\n        eval_time: 5m\n"
        "        exp_samples:\n          - labels: '{}'\n            value: -1"
        for q in quantiles
    )
    path = tmp_path / "quantile_test.yml"
    path.write_text(PROMTOOL_TEST.format(series=series, checks=checks))
    out = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    theirs = [float(v) for v in re.findall(r"got: \{\} (\S+)", out.stdout + out.stderr)]
    assert len(theirs) == len(quantiles), out.stdout + out.stderr
    ours = [quantile(q, {le: float(n) for le, n in buckets.items()}) for q in quantiles]
    assert ours == pytest.approx(theirs, rel=1e-12)
    assert quantile(0.5, {}) is None and quantile(0.5, {1.0: 0.0, float("inf"): 0.0}) is None


def record(model: str, version: int, requests: int, seconds: float, errors: int = 0) -> None:
    """``requests`` answered requests (and ``errors`` 500s) of ``seconds`` each in the real metrics."""
    m, v = get_metrics(), str(version)
    m.requests.labels(model, v, "native", "200", "success").inc(requests)
    m.requests.labels(model, v, "native", "500", "server_error").inc(errors)
    for _ in range(requests + errors):
        m.latency.labels(model, v, "native").observe(seconds)


def shadow(model: str, primary: int, target: int, agree: int, disagree: int, runs: int) -> None:
    m = get_metrics()
    m.shadow_requests.labels(model, str(target), "success").inc(runs)
    m.shadow_agreement.labels(model, str(primary), str(target), "agree").inc(agree)
    m.shadow_agreement.labels(model, str(primary), str(target), "disagree").inc(disagree)


def current(model: str, rules: Rules | None = None) -> dict:  # type: ignore[type-arg]
    text = generate_latest(REGISTRY).decode()
    return report(model_samples(text, model), model, None, rules or Rules())


def verdicts(data: dict) -> dict[int, dict]:  # type: ignore[type-arg]
    return {row["version"]: row["verdict"] for row in data["versions"] if row["verdict"]}


def test_a_challenger_that_agrees_and_is_as_fast_is_as_good() -> None:
    record("cmp-good", 1, 900, 0.004)
    record("cmp-good", 2, 100, 0.004)
    get_metrics().traffic.labels("cmp-good", "canary", "2").inc(100)
    shadow("cmp-good", 1, 2, agree=297, disagree=3, runs=300)
    data = current("cmp-good")
    assert data["champion"] == 1
    rows = {row["version"]: row for row in data["versions"]}
    assert rows[1]["share"] == pytest.approx(0.9) and rows[2]["split"] == {"canary": 100}
    assert rows[2]["agreement"] == pytest.approx(0.99) and rows[2]["agreement_rows"] == 300
    assert rows[1]["p99_s"] == rows[2]["p99_s"] == pytest.approx(quantile(0.99, {0.003: 0, 0.005: 1}))
    verdict = verdicts(data)[2]
    assert verdict["verdict"] == "as good" and len(verdict["held"]) == 4 and not verdict["failed"]
    text = render(data)
    assert "verdict: version 2 is as good vs version 1 (agreement 99.0% >= 99.0% (300 rows)" in text
    assert text.splitlines()[2].split()[:4] == ["1", "champion", "90.0%", "900"]


@pytest.mark.parametrize(
    ("model", "setup", "failed"),
    [
        ("cmp-disagree", lambda m: shadow(m, 1, 2, agree=90, disagree=110, runs=200), "agreement 45.0%"),
        ("cmp-slow", lambda m: record(m, 2, 200, 0.4), "p99 "),
        ("cmp-errors", lambda m: record(m, 2, 180, 0.004, errors=20), "5xx 10.0%"),
    ],
)
def test_a_criterion_that_fails_makes_the_challenger_worse(model: str, setup, failed: str) -> None:  # type: ignore[no-untyped-def]
    record(model, 1, 1000, 0.004)
    setup(model)
    verdict = verdicts(current(model))[2]
    assert verdict["verdict"] == "worse" and verdict["failed"][0].startswith(failed), verdict


def test_too_few_samples_is_not_enough_data_and_the_threshold_is_an_option() -> None:
    record("cmp-few", 1, 500, 0.004)
    shadow("cmp-few", 1, 2, agree=30, disagree=0, runs=30)
    assert verdicts(current("cmp-few"))[2] == {
        "champion": 1,
        "verdict": "not enough data",
        "held": [],
        "failed": [],
    }
    assert verdicts(current("cmp-few", Rules(min_samples=30)))[2]["verdict"] == "as good"
    assert "fewer than 100 samples for every criterion" in render(current("cmp-few"))


def test_regressors_are_judged_by_the_mean_absolute_difference() -> None:
    record("cmp-reg", 1, 500, 0.004)
    for _ in range(150):
        get_metrics().shadow_abs_diff.labels("cmp-reg", "1", "2").observe(0.2)
    get_metrics().shadow_requests.labels("cmp-reg", "2", "success").inc(150)
    data = current("cmp-reg")
    row = {r["version"]: r for r in data["versions"]}[2]
    assert row["mean_abs_diff"] == pytest.approx(0.2) and row["abs_diff_requests"] == 150
    assert row["verdict"]["failed"] == ["mean |difference| 0.2 <= 0.05"]
    assert verdicts(current("cmp-reg", Rules(max_abs_diff=0.5)))[2]["verdict"] == "as good"
    assert "mean |diff| 0.2 (150 requests)" in render(data)


def test_windows_parse_and_bad_ones_are_refused() -> None:
    assert [parse_window(t) for t in ("90", "90s", "5m", "1.5h")] == [90, 90, 300, 5400]
    for bad in ("", "m", "five", "0s", "-3m", "infs"):
        with pytest.raises(argparse.ArgumentTypeError, match="got"):
            parse_window(bad)


def test_an_unreachable_server_is_an_error_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["compare", "cnn", "--url", url]) == 1
    assert f"error: cannot read {url}/metrics" in capsys.readouterr().err
    assert (
        LATENCY_BUCKETS[0] < 0.004 < LATENCY_BUCKETS[-1]
    )  # the recorded latencies above are inside the buckets
