"""Version policies, labels and ``serving.yaml`` edits through the HTTP API of one real server.

Every model here is a scale model whose scale is its version number (y = version * x), so an answer
tells which version gave it. Each test uses its own models and writes the whole ``serving.yaml`` it
needs, so the tests do not depend on their order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from service.models.config import CONFIG_FILE
from tests.server import Server
from tests.service.modelfactory import write_scale_version

pytestmark = pytest.mark.e2e

MODELS = ("latest2", "specific", "labelled", "switch", "keep")
DEADLINE_S = 15.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("policies")
    repo = root / "repo"
    for name in MODELS:
        for v in (1, 2, 3):
            write_scale_version(repo, name, v, float(v))
    write_config(repo, "models:\n  latest2: {latest: 2}\n  specific: {policy: specific, versions: [1, 3]}\n")
    with Server(repo, root / "server.log", workers=1) as srv:
        yield srv


def write_config(repo: Path, text: str | bytes) -> None:
    """Replace ``serving.yaml`` in one step, so the server never reads a half-written file."""
    tmp = repo / f".{CONFIG_FILE}.tmp"
    tmp.write_bytes(text if isinstance(text, bytes) else text.encode())
    os.replace(tmp, repo / CONFIG_FILE)


def listing(server: Server) -> dict[str, dict[str, Any]]:
    r = requests.get(server.url + "/v1/models", timeout=5)
    assert r.status_code == 200, r.text
    return {m["name"]: m for m in r.json()["models"]}


def served(server: Server, name: str) -> list[int]:
    """The versions of ``name`` that are ready (unloaded versions stay listed with their state)."""
    model = listing(server).get(name)
    return [] if model is None else sorted(v["version"] for v in model["versions"] if v["state"] == "ready")


def predict(server: Server, name: str, **address: Any) -> tuple[int, int | None]:
    """(HTTP status, version that answered); checks that the answer is the version's scale."""
    body: dict[str, Any] = {"model": name, "inputs": [[1, 1, 1, 1]], **address}
    r = requests.post(server.url + "/v1/predict", json=body, timeout=10)
    if r.status_code != 200:
        return r.status_code, None
    got = r.json()
    assert got["outputs"]["y"] == [[float(got["version"])] * 4], got
    return 200, got["version"]


def test_latest_2_serves_the_two_newest_and_specific_only_the_listed(server: Server) -> None:
    write_config(
        server.repo, "models:\n  latest2: {latest: 2}\n  specific: {policy: specific, versions: [1, 3]}\n"
    )
    server.wait_for("latest2 serves [2, 3]", lambda: served(server, "latest2") == [2, 3], DEADLINE_S)
    server.wait_for("specific serves [1, 3]", lambda: served(server, "specific") == [1, 3], DEADLINE_S)
    assert predict(server, "latest2") == (200, 3)
    assert predict(server, "latest2", version=2) == (200, 2)
    assert predict(server, "latest2", version=1) == (404, None)
    assert predict(server, "specific") == (200, 3)
    assert predict(server, "specific", version=1) == (200, 1)
    assert predict(server, "specific", version=2) == (404, None)
    models = listing(server)
    assert (models["latest2"]["default_version"], models["specific"]["default_version"]) == (3, 3)


def test_label_edits_take_effect_at_run_time(server: Server) -> None:
    write_config(server.repo, "models:\n  labelled: {policy: all, labels: {stable: 1}}\n")
    server.wait_for("all of labelled served", lambda: served(server, "labelled") == [1, 2, 3], DEADLINE_S)
    server.wait_for("stable -> 1", lambda: predict(server, "labelled", label="stable") == (200, 1), DEADLINE_S)
    assert predict(server, "labelled", label="canary") == (404, None)

    write_config(server.repo, "models:\n  labelled: {policy: all, labels: {stable: 3, canary: 2}}\n")
    server.wait_for("stable -> 3", lambda: predict(server, "labelled", label="stable") == (200, 3), DEADLINE_S)
    assert predict(server, "labelled", label="canary") == (200, 2)
    assert listing(server)["labelled"]["labels"] == {"stable": 3, "canary": 2}
    assert predict(server, "labelled") == (200, 3)  # the default is still the newest

    write_config(server.repo, "models:\n  labelled: {policy: all, labels: {canary: 1}}\n")
    server.wait_for("stable removed", lambda: predict(server, "labelled", label="stable") == (404, None), DEADLINE_S)
    assert predict(server, "labelled", label="canary") == (200, 1)
    assert served(server, "labelled") == [1, 2, 3]


def test_policy_switches_at_run_time(server: Server) -> None:
    write_config(server.repo, "models:\n  switch: {policy: latest}\n")
    server.wait_for("switch serves [3]", lambda: served(server, "switch") == [3], DEADLINE_S)

    write_config(server.repo, "models:\n  switch: {policy: specific, versions: [1, 2]}\n")
    server.wait_for("switch serves [1, 2]", lambda: served(server, "switch") == [1, 2], DEADLINE_S)
    assert predict(server, "switch") == (200, 2)
    assert predict(server, "switch", version=1) == (200, 1)
    server.wait_for("version 3 gone", lambda: predict(server, "switch", version=3) == (404, None), DEADLINE_S)

    write_config(server.repo, "models:\n  switch: {policy: latest, latest: 1}\n")
    server.wait_for("switch serves [3] again", lambda: served(server, "switch") == [3], DEADLINE_S)
    assert predict(server, "switch") == (200, 3)
    server.wait_for("version 1 gone", lambda: predict(server, "switch", version=1) == (404, None), DEADLINE_S)
    assert predict(server, "switch", version=2) == (404, None)


def test_a_broken_serving_yaml_keeps_the_previous_config(server: Server) -> None:
    repo = server.repo
    write_config(repo, "models:\n  keep: {policy: specific, versions: [1, 2], labels: {stable: 1}}\n")
    server.wait_for("keep serves [1, 2]", lambda: served(server, "keep") == [1, 2], DEADLINE_S)
    server.wait_for("stable -> 1", lambda: predict(server, "keep", label="stable") == (200, 1), DEADLINE_S)

    write_config(repo, "models: [unclosed\n")
    # Two later passes: "canary1" is seen by a pass that may have read the config before it broke,
    # "canary2" (written once canary1 is ready) only by a later one, which read the broken file.
    write_scale_version(repo, "canary1", 1, 1.0)
    server.wait_for("canary1 served", lambda: served(server, "canary1") == [1], DEADLINE_S)
    write_scale_version(repo, "canary2", 1, 1.0)
    server.wait_for("canary2 served", lambda: served(server, "canary2") == [1], DEADLINE_S)
    assert "keeping the previous serving configuration" in server.log_path.read_text(errors="replace")
    assert predict(server, "keep", label="stable") == (200, 1)
    assert served(server, "keep") == [1, 2]  # the defaults (latest 1) would serve [3]
    assert predict(server, "keep", version=3) == (404, None)
    assert listing(server)["keep"]["labels"] == {"stable": 1}

    write_config(repo, "models:\n  keep: {policy: specific, versions: [2, 3], labels: {stable: 3}}\n")
    server.wait_for("keep serves [2, 3]", lambda: served(server, "keep") == [2, 3], DEADLINE_S)
    server.wait_for("stable -> 3", lambda: predict(server, "keep", label="stable") == (200, 3), DEADLINE_S)
    server.wait_for("version 1 gone", lambda: predict(server, "keep", version=1) == (404, None), DEADLINE_S)


def test_staging_and_metadata_less_directories_are_ignored_until_complete(
    server: Server, tmp_path: Path
) -> None:
    repo = server.repo
    write_scale_version(repo, "partial", 1, 1.0)
    server.wait_for("partial serves [1]", lambda: served(server, "partial") == [1], DEADLINE_S)

    scratch = tmp_path / "scratch"  # same file system as the repository: renames are atomic
    staged = write_scale_version(scratch, "staged", 1, 1.0)
    (scratch / "staged").rename(repo / ".staging-model")  # a complete model under a dot name
    pending = write_scale_version(scratch, "partial", 2, 2.0)
    (repo / "partial" / "2").mkdir()
    (pending / "model.onnx").rename(repo / "partial" / "2" / "model.onnx")  # metadata.json not yet
    assert (repo / ".staging-model" / "1" / "metadata.json").is_file() and not staged.exists()

    write_scale_version(repo, "sentinel", 1, 1.0)  # the pass that loads it has seen the rest too
    server.wait_for("sentinel served", lambda: served(server, "sentinel") == [1], DEADLINE_S)
    models = listing(server)
    assert not [name for name in models if name.startswith(".")]
    assert [v["version"] for v in models["partial"]["versions"]] == [1]
    assert predict(server, "partial", version=2) == (404, None)
    assert predict(server, "partial") == (200, 1)

    (pending / "metadata.json").rename(repo / "partial" / "2" / "metadata.json")
    server.wait_for("partial serves [2]", lambda: served(server, "partial") == [2], DEADLINE_S)
    assert predict(server, "partial") == (200, 2)
    assert ".staging-model" not in listing(server)
