"""The OpenAPI document against the real server, then schemathesis over every route: zero 5xx.

A real server over really trained models (``trained_repo``). First the document and the validators are
held together: its examples are accepted, its constraints are the settings' limits, its enums are the
models served. Then schemathesis generates requests (bodies included) for every operation with a fixed
seed (deterministic generation: the same cases every run) and checks ``not_a_server_error``; afterwards the server is still ready and predicts correctly.
``FUZZ_EXAMPLES`` sets the examples per operation (default 25) and ``FUZZ_PHASES`` the schemathesis
phases (default ``examples,fuzzing``); README, Development, Fuzzing has the full run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from service.settings import Settings
from tests.conftest import TRAINED_MODELS
from tests.server import Server

pytestmark = pytest.mark.e2e
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
PHASES = os.environ.get("FUZZ_PHASES", "examples,fuzzing")  # the full run adds "coverage" (boundary values)


@pytest.fixture(scope="module")
def server(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(trained_repo, tmp_path_factory.mktemp("logs") / "server.log", workers=1) as srv:
        yield srv


@pytest.fixture(scope="module")
def document(server: Server) -> dict[str, Any]:
    return requests.get(server.url + "/v1/openapi.json", timeout=10).json()


def _body_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    return document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]


def test_the_documents_examples_are_accepted(server: Server, document: dict[str, Any]) -> None:
    native = _body_schema(document, "/v1/predict")["example"]
    model = native["model"]
    tf = _body_schema(document, "/v1/models/{model}:predict")["example"]
    v2 = _body_schema(document, "/v2/models/{model}/infer")["example"]
    for url, body in [
        ("/v1/predict", native),
        (f"/v1/models/{model}:predict", tf),
        (f"/v2/models/{model}/infer", v2),
    ]:
        r = requests.post(server.url + url, json=body, timeout=10)
        assert r.status_code == 200, (url, r.text)


def test_the_documents_constraints_are_the_settings_limits(document: dict[str, Any]) -> None:
    limits = Settings()
    native = _body_schema(document, "/v1/predict")["properties"]
    assert all(t["maxItems"] == limits.max_rows for t in native["inputs"]["anyOf"][0]["anyOf"])
    assert native["inputs"]["anyOf"][1]["maxProperties"] == limits.max_inputs
    assert native["model"]["maxLength"] == limits.max_name_length
    assert sorted(native["model"]["enum"]) == sorted(TRAINED_MODELS)
    v2 = _body_schema(document, "/v2/models/{model}/infer")["properties"]
    assert v2["inputs"]["maxItems"] == limits.max_inputs
    assert v2["inputs"]["items"]["properties"]["shape"]["maxItems"] == limits.max_json_depth
    assert v2["inputs"]["items"]["properties"]["data"]["maxItems"] == limits.max_elements
    params = document["paths"]["/v1/models/{model}/versions/{version}:predict"]["post"]["parameters"]
    assert {p["name"]: p["schema"].get("enum") for p in params} == {
        "model": sorted(TRAINED_MODELS),
        "version": ["1"],
    }


def test_schemathesis_finds_no_server_error(server: Server, tmp_path: Path) -> None:
    report = tmp_path / "report.ndjson"
    started = time.monotonic()
    cmd = [str(Path(sys.executable).with_name("schemathesis")), "run", server.url + "/v1/openapi.json",
           "--url", server.url, "--checks", "not_a_server_error", "--max-examples", str(EXAMPLES),
           "--generation-deterministic", "--no-shrink", "--request-timeout", "30",
           "--phases", PHASES,
           "--exclude-path", "/metrics", "--report", "ndjson", "--report-ndjson-path", str(report),
           "--suppress-health-check", "all", "--no-color"]  # fmt: skip
    out = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, timeout=3600
    )  # its files stay there
    seconds = time.monotonic() - started
    assert report.is_file(), out.stdout[-3000:] + out.stderr[-3000:]
    cases, statuses = _count(report)
    print(f"schemathesis: {cases} cases in {seconds:.1f} s, statuses {dict(sorted(statuses.items()))}")
    assert out.returncode == 0, out.stdout[-6000:]
    assert cases >= 100 and not any(code >= 500 for code in statuses)
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 200
    r = requests.post(server.url + "/v1/predict", json={"model": "linear", "inputs": [[5.0]]}, timeout=10)
    assert r.status_code == 200 and abs(r.json()["outputs"]["output_0"][0][0] - 10.0) < 1.0


def _count(report: Path) -> tuple[int, dict[int, int]]:
    """Generated cases and the status codes they got, from schemathesis' NDJSON events."""
    statuses: dict[int, int] = {}
    cases = 0
    for line in report.read_text().splitlines():
        for interaction in _interactions(json.loads(line)):
            cases += 1
            status = int(interaction["response"]["status_code"])
            statuses[status] = statuses.get(status, 0) + 1
    return cases, statuses


def _interactions(event: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack = [event]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if (
                isinstance(item.get("response"), dict)
                and "status_code" in item["response"]
                and "request" in item
            ):
                found.append(item)
                continue
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found
