"""The real service scraped by a real Prometheus: known traffic in, PromQL answers checked; every dashboard
panel's query and every alert rule's expression runs against it, and every metric they use must exist.

One module-scoped stack: ``bentoml serve`` (2 workers) over a repository of small ONNX models, plus
``prometheus`` on a free loopback port with the shipped config (target and intervals replaced, 1 s scrapes)
and the shipped alert rules.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from service.gpu import visible_gpus
from tests.monitoring.prom import (
    DASHBOARDS,
    JOB,
    SYNTHETIC_METRICS,
    PanelQuery,
    Prometheus,
    alert_rules,
    all_panel_queries,
    derived_config,
    load_dashboard,
    metric_names,
    substitute,
    template_names,
)
from tests.server import Server
from tests.service.modelfactory import write_scale_version
from tests.service.ops.test_drift import attach_reference

pytestmark = pytest.mark.e2e

N = 200  # measured requests to model m ...
K = 40  # ... of which this many have the wrong shape (400)
VALID = [[1.0, 2.0, 3.0, 4.0]]
WRONG_SHAPE = [[1.0, 2.0, 3.0]]
SERVED = {"m", "other", "loose", "tiny", "ab"}


@dataclass
class Stack:
    server: Server
    prom: Prometheus
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)  # (model, status code) -> requests
    ts0: float = 0.0  # timestamp of a scrape taken after the warm-up and before the measured traffic
    ts1: float = 0.0  # timestamp of a scrape taken after all traffic
    metrics_text: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, model: str, inputs: list[list[float]]) -> int:
        r = requests.post(
            self.server.url + "/v1/predict", json={"model": model, "inputs": inputs}, timeout=10
        )
        with self.lock:  # called from many threads; `+=` on a Counter is not atomic
            self.sent[(model, str(r.status_code))] += 1
        return r.status_code

    def prom_counts(self) -> Counter[tuple[str, str]]:
        result = self.prom.query("sum by (model, code) (serving_requests_total)")
        return Counter(
            {(r["metric"]["model"], r["metric"]["code"]): int(float(r["value"][1])) for r in result}
        )

    def sample_time(self, selector: str) -> float:
        """Timestamp of the newest scraped sample of ``selector`` (one series)."""
        return self.prom.scalar(f"timestamp({selector})")


def write_repo(repo: Path) -> None:
    # m has a drift reference, so the Drift row's series exist
    rows = np.random.default_rng(0).uniform(0, 5, (500, 4)).astype(np.float32)
    attach_reference(write_scale_version(repo, "m", 1, 1.0), rows, rows)
    write_scale_version(repo, "other", 1, 2.0)
    write_scale_version(repo, "other", 2, 2.0)  # a regressor shadowed by version 1 (mean |difference|)
    for version in (1, 2):  # a classifier split 50/50, version 2 shadowing version 1 (agreement)
        write_scale_version(repo, "ab", version, 1.0, labels=["a", "b", "c", "d"])
    write_scale_version(repo, "loose", 1, 1.0, declared_width=-1)  # wrong widths reach the runtime: 500
    write_scale_version(repo, "tiny", 1, 1.0)
    corrupt = write_scale_version(repo, "corrupt", 1, 1.0)
    (corrupt / "model.onnx").write_bytes(b"this is not an ONNX graph")
    (repo / "serving.yaml").write_text(
        "models:\n"
        "  m: {max_wait_ms: 20, max_batch_size: 32}\n"
        "  other: {max_wait_ms: 5, policy: all, shadow: {target: 1, percent: 100}}\n"
        "  ab: {policy: all, traffic: {1: 50, 2: 50}, shadow: {target: 2, percent: 100}}\n"
        "  tiny: {max_wait_ms: 50, max_queue_rows: 1}\n"  # a second queued request is rejected (503)
    )


def overload(stack: Stack) -> None:
    """Bursts at the model whose queue holds one row, until more requests were rejected (503)."""
    before = stack.sent[("tiny", "503")]
    for _ in range(5):
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            list(pool.map(lambda _: stack.post("tiny", VALID), range(48)))
        if stack.sent[("tiny", "503")] > before:
            return
    raise AssertionError(f"no request was rejected: {stack.sent}")


def send_measured_traffic(stack: Stack) -> None:
    jobs: list[tuple[str, list[list[float]]]] = [
        ("m", WRONG_SHAPE if i % (N // K) == 0 else VALID) for i in range(N)
    ]
    jobs += [("other", VALID)] * 20
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda job: stack.post(*job), jobs))
    assert codes.count(400) == K and codes.count(200) == N - K + 20, Counter(codes)
    # Concurrently: the batcher never merges rows of different widths into one batch, so each wrong-width
    # request fails alone (500 from the runtime) and every right-width one is answered, in any order.
    mixed = [VALID, [[1.0] * 5]] * 10
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda inputs: stack.post("loose", inputs), mixed))
    assert codes == [200, 500] * 10
    for _ in range(5):
        stack.post("corrupt", VALID)
    # One at a time, so the shadow versions are idle and every mirrored request runs (Canary and shadow row).
    assert [stack.post(model, VALID) for model in ["ab", "other"] * 10] == [200] * 20
    overload(stack)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    repo = tmp_path_factory.mktemp("repo")
    write_repo(repo)
    logs = tmp_path_factory.mktemp("logs")
    with Server(repo, logs / "server.log", workers=2) as server:
        config = derived_config(f"127.0.0.1:{server.port}")
        with Prometheus(config, tmp_path_factory.mktemp("prometheus")) as prom:
            st = Stack(server, prom)
            prom.wait_until(
                lambda: prom.scalar(f'up{{job="{JOB}"}}') == 1.0, timeout=30, what="first successful scrape"
            )
            # Warm-up: every (model, code) series that the measured traffic grows exists before ts0, so
            # increase() and rate() see all of the measured traffic (a counter's first sample is its base).
            for model, inputs in [("m", VALID), ("m", VALID), ("m", WRONG_SHAPE), ("other", VALID), ("ab", VALID),
                                  ("ab", VALID), ("loose", VALID), ("loose", [[1.0] * 5]), ("corrupt", VALID)]:  # fmt: skip
                st.post(model, inputs)
            overload(st)
            warm = Counter(st.sent)
            prom.wait_until(lambda: st.prom_counts() == warm, timeout=20, what=f"warm-up counts {warm}")
            st.ts0 = st.sample_time(f'serving_requests_total{{model="m", code="200", job="{JOB}"}}')
            send_measured_traffic(st)
            prom.wait_until(lambda: st.prom_counts() == st.sent, timeout=20, what=f"final counts {st.sent}")
            st.ts1 = st.sample_time(f'serving_requests_total{{model="m", code="200", job="{JOB}"}}')
            st.metrics_text = requests.get(server.url + "/metrics", timeout=10).text
            yield st


# ----- what Prometheus scraped ------------------------------------------------------------------------------
def test_prometheus_scrapes_the_service_with_the_shipped_job(stack: Stack) -> None:
    result = stack.prom.query("up")
    assert [(r["metric"]["job"], r["metric"]["instance"], r["value"][1]) for r in result] == [
        (JOB, f"127.0.0.1:{stack.server.port}", "1")
    ]


def test_request_counts_match_the_traffic_sent(stack: Stack) -> None:
    assert stack.prom_counts() == stack.sent
    assert stack.sent[("m", "400")] == K + 1 and stack.sent[("m", "200")] == N - K + 2
    assert stack.sent[("corrupt", "503")] == 6


def test_request_rate_by_model(stack: Stack) -> None:
    rates = stack.prom.by_label("sum by (model) (rate(serving_requests_total[5m]))", "model")
    assert set(rates) >= SERVED
    assert all(rates[m] > 0 for m in SERVED), rates
    assert rates["m"] > rates["other"]


def test_error_ratio_of_the_measured_window_is_k_over_n(stack: Stack) -> None:
    """increase() over exactly the scrapes that bracket the measured traffic: K/N, the warm-up left out."""
    window = f"{round((stack.ts1 - stack.ts0) * 1000)}ms"
    total = stack.prom.scalar(f'sum(increase(serving_requests_total{{model="m"}}[{window}]))', stack.ts1)
    errors = stack.prom.scalar(
        f'sum(increase(serving_requests_total{{model="m", code=~"4.."}}[{window}]))', stack.ts1
    )
    assert total == pytest.approx(N, rel=0.02)
    assert errors / total == pytest.approx(K / N, abs=0.01)
    outcome = stack.prom.by_label(
        f'sum by (outcome) (increase(serving_requests_total{{model="m"}}[{window}]))', "outcome", stack.ts1
    )
    assert outcome["client_error"] / sum(outcome.values()) == pytest.approx(K / N, abs=0.01)


def test_p99_latency_is_finite(stack: Stack) -> None:
    p99 = stack.prom.scalar(
        'histogram_quantile(0.99, sum by (le) (rate(serving_request_duration_seconds_bucket{model="m"}[5m])))',
        stack.ts1,
    )
    assert math.isfinite(p99) and 0 < p99 < 10, p99
    p50 = stack.prom.scalar(
        'histogram_quantile(0.5, sum by (le) (rate(serving_request_duration_seconds_bucket{model="m"}[5m])))',
        stack.ts1,
    )
    assert 0 < p50 <= p99


def test_requests_were_batched(stack: Stack) -> None:
    rows = stack.prom.scalar('sum(serving_batch_size_sum{model="m"})')
    assert rows == stack.sent[("m", "200")], "every valid row of m went through the batcher once"
    avg = stack.prom.scalar(
        'sum(rate(serving_batch_size_sum{model="m"}[5m])) / sum(rate(serving_batch_size_count{model="m"}[5m]))',
        stack.ts1,
    )
    assert avg > 1.0, f"average batch size {avg}: concurrent requests were not merged"
    queue = stack.prom.scalar('sum(serving_queue_duration_seconds_sum{model="m"})')
    compute = stack.prom.scalar('sum(serving_compute_duration_seconds_sum{model="m"})')
    assert queue > 0 and compute > 0


def test_model_states_and_info(stack: Stack) -> None:
    failed = stack.prom.by_label('max by (model) (serving_model_state{state="failed"}) == 1', "model")
    ready = stack.prom.by_label('max by (model) (serving_model_state{state="ready"}) == 1', "model")
    assert set(failed) == {"corrupt"}
    assert set(ready) == SERVED
    info = stack.prom.query("serving_model_info")
    assert {(r["metric"]["model"], r["metric"]["runtime"], r["metric"]["provider"]) for r in info} == {
        (m, "onnx", "CPUExecutionProvider") for m in SERVED
    }


def test_rejections_are_counted(stack: Stack) -> None:
    rejected = stack.prom.scalar('sum(serving_rejected_total{model="tiny"})')
    assert rejected == stack.sent[("tiny", "503")] > 0
    assert stack.prom.query('serving_rejected_total{model!="tiny"}') == []


# ----- alert rules --------------------------------------------------------------------------------------------
EXPECTED_ALERTING = {
    "ServingTargetDown": set(),
    "ServingHighErrorRatio": {"loose", "tiny", "corrupt"},  # 500s, overload 503s, no ready version 503s
    "ServingModelVersionFailed": {"corrupt"},
    "ServingModelNotReady": {"corrupt"},
    "ServingRejectingRequests": {"tiny"},
    "ShadowDisagreement": set(),  # ab's versions agree; the firing case is in the promtool tests
}


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTING))
def test_alert_expression_selects_the_expected_models(stack: Stack, alert: str) -> None:
    (rule,) = [r for r in alert_rules() if r["alert"] == alert]
    result = stack.prom.query(rule["expr"], stack.ts1)
    assert {r["metric"].get("model", "") for r in result} == EXPECTED_ALERTING[alert]


def test_latency_alert_expression_evaluates_per_model(stack: Stack) -> None:
    (rule,) = [r for r in alert_rules() if r["alert"] == "ServingHighLatencyP99"]
    assert rule["expr"].count("> 0.25") == 1
    result = stack.prom.query(rule["expr"].replace("> 0.25", ">= 0"), stack.ts1)
    p99 = {r["metric"]["model"]: float(r["value"][1]) for r in result}
    assert set(p99) == SERVED | {"corrupt"}
    assert all(math.isfinite(v) for v in p99.values()), p99


def test_prometheus_loaded_the_rules_and_evaluates_them(stack: Stack) -> None:
    groups = stack.prom.api("rules")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {r["alert"] for r in alert_rules()}
    assert all(r["health"] == "ok" and r["type"] == "alerting" for r in rules.values()), rules

    def not_ready_is_pending() -> bool:
        active = stack.prom.query('ALERTS{alertname="ServingModelNotReady"}')
        return [(a["metric"]["model"], a["metric"]["alertstate"]) for a in active] == [("corrupt", "pending")]

    stack.prom.wait_until(not_ready_is_pending, timeout=15, what="ServingModelNotReady pending for corrupt")


# ----- dashboards -----------------------------------------------------------------------------------------------
HAS_GPU = bool(visible_gpus())  # the GPU row's series exist only where NVML finds a GPU (service/gpu.py)


def needs_gpu(name_or_expr: str) -> bool:
    return any(n.startswith("serving_gpu_") for n in metric_names(name_or_expr))


def panel_params() -> list[Any]:
    queries = [q for q in all_panel_queries() if HAS_GPU or not needs_gpu(q.expr)]
    return [pytest.param(query, id=query.id) for query in queries]


VARIABLES = {path.stem: template_names(load_dashboard(path)) for path in DASHBOARDS}


@pytest.mark.parametrize("query", panel_params())
def test_dashboard_query_returns_data(stack: Stack, query: PanelQuery) -> None:
    """Each panel's PromQL (macros and variables substituted) runs and returns series with real numbers."""
    expr = substitute(query.expr, VARIABLES[query.dashboard])
    result = stack.prom.query(expr, stack.ts1)
    assert result, f"no series for {expr}"
    assert any(math.isfinite(float(r["value"][1])) for r in result), f"only NaN/Inf for {expr}: {result}"


def exposed_names(text: str) -> tuple[set[str], set[str]]:
    """(sample names, family names) in a /metrics text."""
    families = list(text_string_to_metric_families(text))
    return {s.name for f in families for s in f.samples}, {f.name for f in families}


def used_metric_names() -> list[str]:
    names = {n for q in all_panel_queries() for n in metric_names(q.expr)}
    names |= {n for r in alert_rules() for n in metric_names(r["expr"])}
    return sorted(n for n in names - SYNTHETIC_METRICS if HAS_GPU or not needs_gpu(n))


@pytest.mark.parametrize("name", used_metric_names())
def test_metric_used_by_dashboards_and_alerts_is_exposed(stack: Stack, name: str) -> None:
    samples, _ = exposed_names(stack.metrics_text)
    assert name in samples, f"{name} is used by a panel or alert but not on the service's /metrics"


def test_every_serving_metric_is_on_a_dashboard(stack: Stack) -> None:
    _, families = exposed_names(stack.metrics_text)
    ours = {f for f in families if f.startswith("serving_")}
    assert len(ours) >= 12, ours
    used = used_metric_names()
    missing = [f for f in sorted(ours) if not any(n == f or n.startswith(f + "_") for n in used)]
    assert not missing, f"serving metrics on no dashboard panel: {missing}"


def test_gpu_panels_run_and_have_data_only_with_a_gpu(stack: Stack) -> None:
    """Without a GPU the GPU row's queries are valid PromQL that find nothing, and no GPU series is exported."""
    queries = [q for q in all_panel_queries() if needs_gpu(q.expr)]
    names = {n for q in queries for n in metric_names(q.expr)}
    assert names == {
        "serving_gpu_utilization_ratio",
        "serving_gpu_memory_used_bytes",
        "serving_gpu_memory_total_bytes",
    }
    _, families = exposed_names(stack.metrics_text)
    assert {f for f in families if f.startswith("serving_gpu_")} == (names if HAS_GPU else set())
    for query in queries:
        result = stack.prom.query(substitute(query.expr, VARIABLES[query.dashboard]), stack.ts1)
        assert bool(result) == HAS_GPU, (query.id, result)


def test_used_metric_names_found_in_queries() -> None:
    """The extraction behind the two tests above finds the metrics it must (it could otherwise pass vacuously)."""
    used = set(used_metric_names())
    assert {"serving_requests_total", "serving_request_duration_seconds_bucket", "serving_model_state",
            "serving_rejected_total", "bentoml_service_request_total"} <= used  # fmt: skip
    assert len(all_panel_queries()) >= 20
