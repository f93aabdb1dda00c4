"""Helpers for the monitoring tests: the shipped files, PromQL extraction, and a real Prometheus process.

Prometheus and promtool come from the Debian ``prometheus`` package (``./run.sh test`` installs it);
tests that need them fail with :data:`MISSING_REASON` where they are absent (nothing is skipped).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.server import ROOT, free_port

PROM_DIR = ROOT / "deploy" / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
COMPOSE_CONFIG = PROM_DIR / "prometheus-compose.yml"
ALERTS = PROM_DIR / "alerts.yml"
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
JOB = "keras-serving"

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
MISSING_REASON = (
    "needs the prometheus and promtool binaries (Debian: apt-get install -y prometheus); "
    f"found prometheus={PROMETHEUS}, promtool={PROMTOOL}"
)

# What Grafana would put in place of its macros and of the dashboards' template variables when
# the tests run the panels' queries. 1m covers several 1 s scrapes, so rate() has samples.
MACROS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$__range_s": "300",
    "$__interval_ms": "15000",
}
TEMPLATE_VALUE = ".*"

# Series that Prometheus makes itself rather than scraping them from the service.
SYNTHETIC_METRICS = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})


def promtool(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run promtool; the caller asserts on ``returncode`` and the output."""
    assert PROMTOOL is not None, MISSING_REASON
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=PROM_DIR
    )


# ----- dashboards -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PanelQuery:
    """One PromQL query of one dashboard panel."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.panel}:{self.ref_id}"


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def load_dashboard(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panel_queries(path: Path) -> list[PanelQuery]:
    """Every ``targets[].expr`` of every panel of a dashboard file."""
    dashboard = load_dashboard(path)
    return [
        PanelQuery(path.stem, panel["title"], target.get("refId", "?"), target["expr"])
        for panel in iter_panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def all_panel_queries() -> list[PanelQuery]:
    return [q for path in DASHBOARDS for q in panel_queries(path)]


def template_names(dashboard: dict[str, Any]) -> list[str]:
    return [var["name"] for var in dashboard.get("templating", {}).get("list", [])]


def substitute(expr: str, variables: list[str]) -> str:
    """Replace Grafana's macros and the template variables (``$v``, ``${v}``, ``${v:fmt}``)."""
    for macro in sorted(MACROS, key=len, reverse=True):  # $__range_s before $__range
        expr = expr.replace("${" + macro[1:] + "}", MACROS[macro]).replace(macro, MACROS[macro])
    for name in variables:
        expr = re.sub(r"\$\{" + re.escape(name) + r"(:[a-z]+)?\}", TEMPLATE_VALUE, expr)
        expr = re.sub(r"\$" + re.escape(name) + r"\b", TEMPLATE_VALUE, expr)
    return expr


# ----- metric names in PromQL -------------------------------------------------------------------------
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
     "offset", "inf", "nan", "le"}
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\b(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (function names, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    text = _GROUPING.sub("", text)
    text = re.sub(r"\boffset\s+\S+", "", text)
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}


def alert_rules() -> list[dict[str, Any]]:
    """The alerting rules of ``alerts.yml``."""
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


# ----- a real Prometheus --------------------------------------------------------------------------------
def derived_config(target: str, rule_file: Path = ALERTS, interval: str = "1s") -> dict[str, Any]:
    """The shipped ``prometheus.yml`` with the target, the rule file path and the intervals replaced."""
    config: dict[str, Any] = yaml.safe_load(PROM_CONFIG.read_text())
    jobs = config["scrape_configs"]
    assert [job["job_name"] for job in jobs] == [JOB], "expected one scrape job, keras-serving"
    assert jobs[0]["static_configs"] == [{"targets": ["localhost:3000"]}]
    jobs[0]["static_configs"] = [{"targets": [target]}]
    config["global"].update(scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval)
    assert config["rule_files"] == ["alerts.yml"]
    config["rule_files"] = [str(rule_file)]
    return config


class PromQLError(RuntimeError):
    """Prometheus answered a query with an error."""


class Prometheus:
    """``prometheus`` on a free loopback port with its own storage directory; a context manager."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.workdir = workdir
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        assert PROMETHEUS is not None, MISSING_REASON
        cmd = [
            PROMETHEUS,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
        try:
            self.wait_until(
                lambda: requests.get(self.url + "/-/ready", timeout=1).status_code == 200,
                timeout=20,
                what="Prometheus /-/ready",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def api(self, path: str, **params: str) -> Any:
        r = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = r.json()
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; raises :class:`PromQLError` if Prometheus rejects it."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", **params)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def scalar(self, expr: str, at: float | None = None) -> float:
        """The value of a query that returns exactly one series."""
        result = self.query(expr, at)
        assert len(result) == 1, f"{expr}: expected one series, got {result}"
        return float(result[0]["value"][1])

    def by_label(self, expr: str, label: str, at: float | None = None) -> dict[str, float]:
        """``{value of label: sample value}`` of an instant query."""
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr, at)}

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``check`` every 0.25 s until it is true; fail with the Prometheus log after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if check():
                    return
            except (requests.RequestException, PromQLError, AssertionError, KeyError) as exc:
                last = exc
            time.sleep(0.25)
        raise TimeoutError(f"{what} not true after {timeout}s (last error: {last}):\n{self.log()}")
