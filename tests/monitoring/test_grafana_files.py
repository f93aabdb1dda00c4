"""Static checks of the Grafana provisioning and dashboards (no Grafana server exists here; the panels'
queries run against a real Prometheus in test_monitoring_e2e.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.prom import (
    DASHBOARDS,
    GRAFANA_DIR,
    MACROS,
    all_panel_queries,
    iter_panels,
    load_dashboard,
    metric_names,
    substitute,
    template_names,
)
from tests.server import ROOT

DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def datasource() -> dict[str, Any]:
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert len(sources) == 1
    source: dict[str, Any] = sources[0]
    return source


def test_metric_names_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (model, le) (rate(serving_request_duration_seconds_bucket{model=~"a|b",'
        ' le!="+Inf"}[5m] offset 1m))) > 0.25 and on (model) max without (pid) (serving_model_state{state="x"})'
        ' unless up{job="keras-serving"} == bool 1e3'
    )
    assert metric_names(expr) == {"serving_request_duration_seconds_bucket", "serving_model_state", "up"}
    assert metric_names("sum(rate(a_total[1m])) / sum(rate(b_total[1m])) or vector(0)") == {
        "a_total",
        "b_total",
    }


def test_substitute_replaces_macros_and_variables() -> None:
    expr = 'rate(x{model=~"$model", m2=~"${model}", m3=~"${model:regex}"}[$__rate_interval]) + increase(y[$__range])'
    out = substitute(expr, ["model"])
    assert (
        out == f'rate(x{{model=~".*", m2=~".*", m3=~".*"}}[{MACROS["$__rate_interval"]}]) + increase(y[5m])'
    )


def test_datasource_points_at_the_compose_prometheus() -> None:
    source = datasource()
    assert source["type"] == "prometheus" and source["uid"] == "prometheus" and source["isDefault"] is True
    services = compose()["services"]
    assert "prometheus" in services
    listen = [a for a in services["prometheus"]["command"] if a.startswith("--web.listen-address=")]
    assert listen and listen[0].endswith(":9090")
    assert source["url"] == "http://prometheus:9090"
    scrape_interval = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["global"][
        "scrape_interval"
    ]
    assert source["jsonData"]["timeInterval"] == scrape_interval


def test_dashboard_provider_path_is_where_compose_mounts_the_dashboards() -> None:
    providers = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    path = providers[0]["options"]["path"]
    volumes = compose()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in volumes
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_structure(path: Path) -> None:
    dashboard = load_dashboard(path)
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    panels = list(iter_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    uid = datasource()["uid"]
    variables = template_names(dashboard)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            leftover = substitute(target["expr"], variables)
            assert "$" not in leftover, f"unknown variable or macro in {panel['title']!r}: {leftover}"
    for var in dashboard["templating"]["list"]:
        assert var["datasource"] == {"type": "prometheus", "uid": uid}
        match = re.fullmatch(r"label_values\((\w+), (\w+)\)", var["definition"])
        assert match, var["definition"]


def test_dashboard_covers_the_issue_panels() -> None:
    """Traffic, errors, latency quantiles, queue vs compute, batch size, in-flight, states, runtime, process."""
    exprs = " ".join(q.expr for q in all_panel_queries())
    for needle in [
        "sum by (model, version, protocol) (rate(serving_requests_total",
        'code=~"5.."',
        "histogram_quantile(0.5, ",
        "histogram_quantile(0.95, ",
        "histogram_quantile(0.99, sum by (model, le) (rate(serving_request_duration_seconds_bucket",
        "serving_queue_duration_seconds_sum",
        "serving_compute_duration_seconds_sum",
        "serving_batch_size_sum",
        "serving_batch_size_bucket",
        "serving_inflight_requests",
        "serving_model_state",
        "serving_model_info",
        "serving_rejected_total",
        "serving_admission_threshold_seconds",
        "serving_process_cpu_seconds",
        "serving_process_resident_memory_bytes",
    ]:
        assert needle in exprs, f"no panel uses {needle!r}"
