"""A short headless locust run of the load-test kit against a real server: zero failures, sane counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import ROOT, Server
from tests.service.modelfactory import write_scale_version

pytestmark = pytest.mark.e2e
LOCUSTFILE = ROOT / "deploy" / "loadtest" / "locustfile.py"


def run_locust(server: Server, classes: list[str], seconds: int, users: int, tmp_path: Path) -> list[dict]:
    locust = Path(sys.executable).with_name("locust")
    cmd = [
        str(locust), "-f", str(LOCUSTFILE), "--host", server.url, "--headless", "-u", str(users), "-r", str(users),
        "-t", f"{seconds}s", "--json", "--only-summary", *classes,
    ]  # fmt: skip
    env = {**os.environ, "LOADTEST_V2_GRPC": server.v2_grpc, "LOADTEST_BATCH": "16"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_locust_scenarios_run_without_failures(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_scale_version(repo, "cnn", 1, 1.0, shape=[-1, 28, 28, 1])
    write_scale_version(repo, "mlp", 1, 1.0, shape=[-1, 10])
    write_scale_version(repo, "rnn", 1, 1.0, shape=[-1, 10, 1])
    with Server(repo, tmp_path / "server.log", workers=2) as server:
        stats = run_locust(
            server,
            [
                "MixedProfile",
                "CnnSingleImage",
                "CnnBatch",
                "MlpRows",
                "RnnSequences",
                "TfServingRest",
                "V2Json",
                "V2Binary",
                "V2Grpc",
            ],
            seconds=8,
            users=9,
            tmp_path=tmp_path,
        )
    by_name = {s["name"]: s for s in stats}
    assert sum(s["num_failures"] for s in stats) == 0, [
        (s["name"], s["num_failures"]) for s in stats if s["num_failures"]
    ]
    for name in ("native cnn x1", "native cnn x16", "native mlp x8", "native rnn x4", "tfserving-rest cnn x1",
                 "v2-json cnn x1", "v2-binary cnn x16", "v2-grpc cnn x1"):  # fmt: skip
        assert by_name[name]["num_requests"] >= 20, (name, by_name[name]["num_requests"])
    mixed = [s for s in stats if s["name"].startswith("mixed ")]
    assert len(mixed) == 6 and sum(s["num_requests"] for s in mixed) >= 50
