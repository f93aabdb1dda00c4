"""promtool on the shipped Prometheus files: the config and the rules are valid, the rule unit tests pass,
and each check really fails on a broken copy (so a green result means something)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.monitoring.prom import (
    ALERTS,
    COMPOSE_CONFIG,
    JOB,
    PROM_CONFIG,
    PROM_DIR,
    RULE_TESTS,
    alert_rules,
    derived_config,
    promtool,
)

ALERT_NAMES = {
    "ServingTargetDown",
    "ServingHighErrorRatio",
    "ServingHighLatencyP99",
    "ServingModelVersionFailed",
    "ServingModelNotReady",
    "ServingRejectingRequests",
    "ShadowDisagreement",
    "ModelInputDrift",
}


def copy_prometheus_dir(tmp_path: Path) -> Path:
    """deploy/prometheus copied to ``tmp_path`` (rule tests refer to ``../alerts.yml``)."""
    target = tmp_path / "prometheus"
    shutil.copytree(PROM_DIR, target)
    return target


@pytest.mark.parametrize("config", [PROM_CONFIG, COMPOSE_CONFIG], ids=lambda p: p.name)
def test_check_config_passes(config: Path) -> None:
    out = promtool("check", "config", config)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in out.stdout


def test_compose_config_differs_only_in_the_target() -> None:
    local = yaml.safe_load(PROM_CONFIG.read_text())
    compose = yaml.safe_load(COMPOSE_CONFIG.read_text())
    assert local["scrape_configs"][0]["static_configs"] == [{"targets": ["localhost:3000"]}]
    assert compose["scrape_configs"][0]["static_configs"] == [{"targets": ["serving:3000"]}]
    compose["scrape_configs"][0]["static_configs"] = local["scrape_configs"][0]["static_configs"]
    assert compose == local


def test_check_config_fails_on_a_broken_copy(tmp_path: Path) -> None:
    broken = tmp_path / "prometheus.yml"
    broken.write_text(PROM_CONFIG.read_text().replace("scrape_interval: 15s", "scrape_interval: fast"))
    assert broken.read_text() != PROM_CONFIG.read_text()
    out = promtool("check", "config", broken)
    assert out.returncode != 0
    assert "fast" in out.stdout + out.stderr


def test_derived_test_config_passes_check(tmp_path: Path) -> None:
    """The config the end-to-end test runs is the shipped one with only target and intervals changed."""
    config = derived_config("127.0.0.1:1234")
    assert config["scrape_configs"][0]["job_name"] == JOB
    assert config["scrape_configs"][0]["metrics_path"] == "/metrics"
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    out = promtool("check", "config", path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_check_rules_passes() -> None:
    out = promtool("check", "rules", ALERTS)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in out.stdout
    assert {rule["alert"] for rule in alert_rules()} == ALERT_NAMES


def test_every_alert_has_severity_summary_and_description() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert "for" in rule, f"{rule['alert']} has no 'for': it would fire on a single evaluation"


def test_check_rules_fails_on_a_broken_copy(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    text = ALERTS.read_text()
    assert text.count("max by (model, version) (serving_model_state") == 1
    broken.write_text(
        text.replace("max by (model, version) (serving_model_state", "max by (model, version (serving")
    )
    out = promtool("check", "rules", broken)
    assert out.returncode != 0
    assert '"ServingModelVersionFailed": could not parse expression' in out.stdout + out.stderr


def test_rule_unit_tests_pass() -> None:
    assert len(RULE_TESTS) >= 5
    out = promtool("test", "rules", *RULE_TESTS)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    """Each alert appears in a rule test with a non-empty and with an empty ``exp_alerts``."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert firing == ALERT_NAMES
    assert quiet == ALERT_NAMES


# One change to alerts.yml per line: each must make `promtool test rules` fail. "miss" mutations make an alert
# blind to a case the tests expect to fire; "noisy" ones make it fire on a case the tests expect to stay quiet.
MUTATIONS = [
    ("target-down miss", 'expr: up{job="keras-serving"} == 0\n        for: 1m', 'expr: up{job="keras-serving"} == 0\n        for: 5m'),
    ("target-down noisy", 'expr: up{job="keras-serving"} == 0', "expr: up == 0"),
    ("error-ratio miss", ") > 0.05", ") > 0.10"),
    ("error-ratio noisy", ") > 0.05", ") > 0.01"),
    ("error-ratio counts 4xx", 'rate(serving_requests_total{code=~"5.."}', 'rate(serving_requests_total{code=~"[45].."}'),
    ("latency miss", ") > 0.25", ") > 0.6"),
    ("latency noisy", ") > 0.25", ") > 0.005"),
    ("latency no for", "> 0.25\n        for: 5m", "> 0.25\n        for: 0m"),
    ("failed miss", '(serving_model_state{state="failed"}) == 1', '(serving_model_state{state="failed"}) == 2'),
    ("failed noisy", '(serving_model_state{state="failed"}) == 1', '(serving_model_state{state="failed"}) >= 0'),
    ("not-ready miss", '(serving_model_state{state="ready"}) == 0)', '(serving_model_state{state="ready"}) == 2)'),
    ("not-ready counts unloaded models", "unless on (model)\n", "and on (model)\n"),
    ("rejections miss", "(rate(serving_rejected_total[5m])) > 0", "(rate(serving_rejected_total[5m])) > 1"),
    ("rejections noisy", "(rate(serving_rejected_total[5m])) > 0", "(rate(serving_rejected_total[30m])) > 0"),
    ("disagreement miss", ") < 0.95\n", ") < 0.75\n"),
    ("disagreement noisy", ") < 0.95\n", ") < 0.995\n"),
    ("disagreement few samples", "[15m])) >= 100", "[15m])) >= 50"),
    ("disagreement short for", "[15m])) >= 100\n        for: 5m", "[15m])) >= 100\n        for: 3m"),
    ("drift miss", "serving_drift_score > 0.25", "serving_drift_score > 0.75"),
    ("drift noisy", "serving_drift_score > 0.25", "serving_drift_score > 0.15"),
    ("drift small windows", "serving_drift_window_rows >= 500", "serving_drift_window_rows >= 100"),
    ("drift pairs across workers", "and ignoring (feature)", "and on (model, version)"),
    ("drift no for", "for: 15m", "for: 0m"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_rule_unit_tests_catch_a_changed_rule(tmp_path: Path, old: str, new: str) -> None:
    copy = copy_prometheus_dir(tmp_path)
    text = (copy / "alerts.yml").read_text()
    assert text.count(old) == 1, f"mutation target not unique in alerts.yml: {old!r}"
    (copy / "alerts.yml").write_text(text.replace(old, new))
    assert promtool("check", "rules", copy / "alerts.yml").returncode == 0, "the mutant must stay valid"
    out = promtool("test", "rules", *sorted((copy / "tests").glob("*.yml")))
    assert out.returncode != 0, f"rule tests still pass after {old!r} -> {new!r}:\n{out.stdout}"
    assert "FAILED" in out.stdout + out.stderr
