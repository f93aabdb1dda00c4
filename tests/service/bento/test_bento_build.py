"""``bentoml build`` with the repository's ``bentofile.yaml``, then ``bentoml serve <tag>`` as a real process.

The build context is a copy of the repository's ``bentofile.yaml`` and ``service/`` with a small model
repository of its own (``m``: ``y = 3x``), so the test shows that the Bento carries the service and the
models itself: the served model exists nowhere else, and the server runs from the Bento's ``src/``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import requests
import yaml
from packaging.requirements import Requirement

from tests.server import ROOT, Server
from tests.service.modelfactory import write_scale_version

BENTOML = str(Path(sys.executable).with_name("bentoml"))
BENTOFILE = ROOT / "bentofile.yaml"


def test_every_package_is_pinned_to_the_installed_version() -> None:
    packages = yaml.safe_load(BENTOFILE.read_text())["python"]["packages"]
    assert packages, "bentofile.yaml pins no package"
    for line in packages:
        requirement = Requirement(line)
        pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        assert len(pins) == 1, f"{line}: not pinned with =="
        assert version(requirement.name) == pins[0], f"{line}: installed {version(requirement.name)}"
    names = {Requirement(line).name for line in packages}
    assert {"onnxruntime", "numpy", "swagger-ui-bundle-v2"} <= names  # BentoML pins itself (see below)


class BentoServer(Server):
    """``bentoml serve <tag>`` from a BentoML home of its own; the repository path is the Bento's own
    ``models`` (relative: BentoML runs the service in the Bento's ``src/``)."""

    def __init__(self, tag: str, home: Path, log_path: Path) -> None:
        super().__init__(Path("models"), log_path, BENTOML_HOME=str(home))
        self.tag = tag

    def command(self) -> list[str]:
        return [BENTOML, "serve", self.tag, "--host", "127.0.0.1", "--port", str(self.port)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(tag, BENTOML_HOME) of a Bento built from a copy of the service with its own model repository."""
    folder = tmp_path_factory.mktemp("bento-build")
    context, home = folder / "context", folder / "home"
    shutil.copytree(ROOT / "service", context / "service", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(BENTOFILE, context / "bentofile.yaml")
    write_scale_version(context / "models", "m", 1, 3.0)
    (context / "models" / ".staging-half-written").mkdir()  # a version being written: left out
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(folder), "BENTOML_HOME": str(home),
           "BENTOML_DO_NOT_TRACK": "true"}  # fmt: skip
    out = subprocess.run([BENTOML, "build", "--output", "tag", "."], cwd=context, env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    tag = out.stdout.strip().rsplit("__tag__:", 1)[-1].strip()
    assert tag.startswith("keras-serving:"), out.stdout
    return tag, home


def test_the_bento_holds_service_models_and_pins(built: tuple[str, Path]) -> None:
    tag, home = built
    name, _, bento_version = tag.partition(":")
    bento = home / "bentos" / name / bento_version
    assert (bento / "src" / "service" / "service.py").is_file()
    assert (bento / "src" / "service" / "ui" / "index.html").is_file()  # package data of the playground
    assert (bento / "src" / "models" / "m" / "1" / "model.onnx").is_file()
    assert (bento / "src" / "models" / "m" / "1" / "metadata.json").is_file()
    assert not list((bento / "src" / "models").glob(".staging*"))
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().split()
    assert "onnxruntime==" + version("onnxruntime") in requirements
    assert "bentoml==" + version("bentoml") in requirements
    assert "swagger-ui-bundle-v2==" + version("swagger-ui-bundle-v2") in requirements
    assert yaml.safe_load((bento / "bento.yaml").read_text())["service"] == "service.service:ModelServer"


@pytest.fixture(scope="module")
def server(built: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tag, home = built
    with BentoServer(tag, home, tmp_path_factory.mktemp("bento-serve") / "server.log") as srv:
        yield srv


@pytest.mark.e2e
def test_the_served_bento_predicts_with_its_own_model(server: Server) -> None:
    answer = requests.post(
        server.url + "/v1/predict", json={"model": "m", "inputs": [[1, 2, 3, 4]]}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"model": "m", "version": 1, "runtime": "onnx", "outputs": {"y": [[3, 6, 9, 12]]}}
    typed = requests.post(server.url + "/predict", json={"model": "m", "inputs": [[2, 2, 2, 2]]}, timeout=10)
    assert typed.status_code == 200 and typed.json()["outputs"]["y"] == [[6, 6, 6, 6]], typed.text
    models = requests.get(server.url + "/v1/models", timeout=10).json()["models"]
    assert [m["name"] for m in models] == ["m"]  # the Bento's repository, not the working tree's models/
    assert requests.get(server.url + "/docs", timeout=10).status_code == 200
