"""Kubernetes manifests: valid against the 1.30 schemas, and consistent with the server they run.

There is no API server here (no kind, no k3s): ``kubernetes-validate`` checks each manifest against
the official schemas (strict: unknown fields fail), and the rest is checked against our own code —
settings names, ports, the training CLI — and against a real server answering the probe paths.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from service.settings import Settings
from tests.server import Server
from tests.service.modelfactory import write_scale_version
from training.__main__ import build_parser

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / name).read_text())  # type: ignore[no-any-return]


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def _validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    validate = Path(sys.executable).with_name("kubernetes-validate")
    assert validate.exists(), "pip install kubernetes-validate (in the dev extra)"
    command = [str(validate), "--strict", "-k", "1.30.0", *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True)


def test_every_manifest_is_valid_for_kubernetes_1_30() -> None:
    result = _validate(*MANIFESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(MANIFESTS), result.stdout


def test_a_broken_manifest_is_caught_by_the_validator(tmp_path: Path) -> None:
    broken = _load("deployment.yaml")
    _container(broken)["ports"][0]["containerPort"] = "http"  # a string where an integer belongs
    _container(broken)["imagePullPolicyy"] = "Always"  # unknown field: strict mode
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    assert _validate(path).returncode != 0


def test_kustomization_lists_every_manifest() -> None:
    assert sorted(_load("kustomization.yaml")["resources"]) == sorted(p.name for p in MANIFESTS)


def test_env_ports_and_service_match_the_server_settings() -> None:
    container = _container(_load("deployment.yaml"))
    env = {e["name"]: e["value"] for e in container["env"]}
    fields = {f"SERVING_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in env if k.startswith("SERVING_")} <= fields
    settings = Settings(**{k.removeprefix("SERVING_").lower(): v for k, v in env.items() if k in fields})
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "http": settings.port,
        "grpc-tfserving": settings.grpc_tfserving_port,
        "grpc-v2": settings.grpc_v2_port,
    }
    assert settings.host == settings.grpc_host == "0.0.0.0"  # reachable from outside the pod
    service = _load("service.yaml")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert service["spec"]["selector"] == _load("deployment.yaml")["spec"]["selector"]["matchLabels"]
    assert _load("pdb.yaml")["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(settings.repository) in mounts and "/tmp" in mounts  # read-only root: BentoML writes to /tmp


def test_the_training_job_runs_a_real_cli_command() -> None:
    command = _container(_load("train-job.yaml"))["command"]
    assert command[0] == "train-models"
    args = build_parser().parse_args(command[1:])
    assert args.missing_only and args.repo == "/app/models"


@pytest.fixture(scope="module")
def probe_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    repo = tmp_path_factory.mktemp("k8s") / "models"
    write_scale_version(repo, "m", 1, 1.0)
    with Server(repo, repo.parent / "server.log") as server:
        yield server


@pytest.mark.e2e
def test_the_probe_paths_are_answered_by_a_real_server(probe_server: Server) -> None:
    container = _container(_load("deployment.yaml"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == "http"
        answer = requests.get(probe_server.url + get["path"], timeout=5)
        assert answer.status_code == 200, (probe, get["path"], answer.status_code)


def test_the_pods_run_as_the_user_the_image_creates() -> None:
    dockerfile = (K8S.parent / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile and "--uid 10001" in dockerfile
    for name in ("deployment.yaml", "train-job.yaml"):
        assert _load(name)["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
