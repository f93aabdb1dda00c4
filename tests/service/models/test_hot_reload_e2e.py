"""Hot reload under continuous load against a real 2-worker server: zero failed requests."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import requests

from tests.server import Server
from tests.service.modelfactory import remove_version, write_scale_version

pytestmark = pytest.mark.e2e


def test_version_swaps_under_load_fail_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_scale_version(repo, "m", 1, 1.0)
    results: list[tuple[int, int | None]] = []
    wrong: list[tuple[int, object]] = []  # (version, output) pairs where the answer does not match
    errors: list[str] = []  # exceptions raised in the client threads (lost otherwise)
    stop = threading.Event()

    def client(url: str) -> None:
        session = requests.Session()
        deadline = time.monotonic() + 40
        try:
            while not stop.is_set() and time.monotonic() < deadline and len(results) < 200_000:
                r = session.post(
                    url + "/v1/predict", json={"model": "m", "inputs": [[1, 1, 1, 1]]}, timeout=10
                )
                version = r.json().get("version") if r.status_code == 200 else None
                if r.status_code == 200 and r.json()["outputs"]["y"][0][0] != float(version):
                    wrong.append((version, r.json()["outputs"]))  # the answer must match the version
                results.append((r.status_code, version))
        except Exception as exc:
            errors.append(repr(exc))

    def wait_for(version: int, timeout: float = 15.0) -> None:
        start = len(results)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recent = results[max(start, len(results) - 50) :]
            if len(recent) >= 50 and all(v == version for _, v in recent):
                return
            time.sleep(0.1)
        raise AssertionError(f"version {version} never took over; last: {results[-5:]}")

    with Server(repo, tmp_path / "server.log", workers=2) as server:
        threads = [threading.Thread(target=client, args=(server.url,)) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            write_scale_version(repo, "m", 2, 2.0)
            wait_for(2)
            write_scale_version(repo, "m", 3, 3.0)
            remove_version(repo, "m", 2)
            remove_version(repo, "m", 1)
            wait_for(3)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=20)
        assert not any(t.is_alive() for t in threads), "a client thread hung"
        states = {
            v["version"]: v["state"]
            for v in requests.get(server.url + "/v1/models", timeout=5).json()["models"][0]["versions"]
        }

    assert not errors, f"client threads raised: {errors}"
    assert not wrong, f"{len(wrong)} answers did not match their version: {wrong[:3]}"
    failures = [s for s, _ in results if s != 200]
    assert not failures, f"{len(failures)} failed of {len(results)}: {sorted(set(failures))}"
    assert {v for _, v in results} == {1, 2, 3}
    assert len(results) > 200
    # Version 2 lives for a moment only: the worker that answers the listing may have polled the
    # repository only after it was gone again (a loaded machine polls late), and then never listed it.
    assert (
        states[3] == "ready"
        and states[1] in ("unloading", "unloaded")
        and states.get(2, "never seen by this worker") in ("unloading", "unloaded", "never seen by this worker")
    ), states
