"""Payload capture: sampling, JSONL content, rotation by size and age, retention, drops under pressure.

Real parts throughout: real ONNX models in a real registry and data plane, real files, the real writer
thread and the process's real Prometheus counters.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from service.dataplane import DataPlane, InferenceRequest
from service.models.config import ModelPolicy
from service.models.registry import ModelRegistry
from service.ops import Served
from service.ops.capture import CLOSED_SUFFIX, OPEN_SUFFIX, Capture, CaptureWriter, RotatingFiles
from service.settings import Settings
from tests.service.modelfactory import write_scale_version


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def served(model: str = "m", rid: str = "r", rows: int = 1) -> Served:
    x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    return Served(model, 1, "native", rid, {"x": x}, {"y": x * 2}, 0.0012)


def lines_of(directory: Path) -> list[dict[str, Any]]:
    """Every record of the directory's capture files, file by file in name order."""
    files = sorted(directory.glob("capture-*"))
    return [orjson.loads(line) for f in files for line in f.read_bytes().splitlines()]


def registry_with(tmp_path: Path, yaml: str, load: bool = True, **settings: Any) -> ModelRegistry:
    repo = tmp_path / "repo"
    write_scale_version(repo, "m", 1, 2.0)
    write_scale_version(repo, "other", 1, 1.0)
    (repo / "serving.yaml").write_text(yaml)
    registry = ModelRegistry(
        Settings(repository=repo, poll_interval_s=0, capture_dir=tmp_path / "capture", **settings)
    )
    if load:
        asyncio.run(registry.sync())
    return registry


def test_the_sample_rate_is_the_models_percent(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, "models:\n  m: {capture: {percent: 10}}\n", capture_queue=100_000)
    capture = Capture(registry)
    assert capture.configure(registry.config)
    assert capture.rates == {"m": 0.1}, "only the model with capture on"
    random.seed(1)
    for i in range(20_000):
        capture.observe(served("m", f"m-{i}"))
        capture.observe(served("other", f"o-{i}"))
    capture.close()
    records = lines_of(tmp_path / "capture")
    assert {r["model"] for r in records} == {"m"}
    assert 1_790 <= len(records) <= 2_210, f"{len(records)} of 20000 at 10 % (5 sigma: 1790-2210)"
    assert len({r["request_id"] for r in records}) == len(records)


def test_the_server_default_applies_to_models_without_an_entry_and_zero_is_off(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, "models:\n  m: {capture: {percent: 0}}\n", capture_percent=100.0)
    capture = Capture(registry)
    assert capture.configure(registry.config)
    assert capture.rates == {"other": 1.0}
    capture.close()
    off = registry_with(tmp_path / "off", "models: {}\n")
    assert not Capture(off).configure(off.config), "no percent anywhere: the feature is off"


def test_records_hold_what_the_data_plane_answered(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, "models:\n  m: {capture: {percent: 100}}\n", load=False)
    plane = DataPlane(registry)
    x = [[1.0, 2.0, 3.0, 4.0], [0.5, 0.25, 0.125, 8.0]]

    async def main() -> Any:
        await registry.start()
        answer = await plane.infer(InferenceRequest("m", {None: np.array(x)}, "native", request_id="req-7"))
        await registry.close()
        return answer

    before = sample("serving_capture_written_total", model="m")
    answer = asyncio.run(main())
    plane.ops.close()
    assert not list((tmp_path / "capture").glob(f"*{OPEN_SUFFIX}")), "closed at shutdown"
    [record] = lines_of(tmp_path / "capture")
    assert set(record) == {"time", "request_id", "model", "version", "protocol", "variant", "latency_ms",
                           "inputs", "outputs"}  # fmt: skip
    assert (record["request_id"], record["model"], record["version"], record["protocol"]) == (
        "req-7", "m", 1, "native",
    )  # fmt: skip
    assert (
        record["time"].endswith("Z")
        and abs(datetime.fromisoformat(record["time"]).timestamp() - time.time()) < 60
    )
    assert 0 < record["latency_ms"] < 10_000
    assert record["inputs"] == {"x": x}, "the validated float32 inputs, as nested lists"
    assert record["outputs"] == {"y": answer.outputs["y"].tolist()} == {"y": (np.array(x) * 2).tolist()}
    assert sample("serving_capture_written_total", model="m") == before + 1


def test_files_rotate_by_size_and_every_line_survives(tmp_path: Path) -> None:
    files = RotatingFiles(tmp_path, max_bytes=1000, max_age_s=3600, max_total_bytes=10**9)
    lines = [b'{"n": %05d, "pad": "%s"}\n' % (i, b"x" * 76) for i in range(25)]  # 100 bytes each
    assert {len(line) for line in lines} == {100}
    for i in range(0, 25, 4):
        files.write(lines[i : i + 4], now=0.0)
    big = b'{"big": "' + b"y" * 1500 + b'"}\n'
    files.write([big, lines[0]], now=1.0)
    files.close()
    written = sorted(tmp_path.glob("capture-*"))
    assert all(f.name.endswith(CLOSED_SUFFIX) for f in written), [f.name for f in written]
    sizes = [f.stat().st_size for f in written]
    assert sizes == [1000, 1000, 500, len(big), 100], "full files of 10 lines; the big line alone"
    assert b"".join(f.read_bytes() for f in written) == b"".join(lines) + big + lines[0]


def test_files_rotate_by_age_and_an_idle_writer_closes_its_file(tmp_path: Path) -> None:
    files = RotatingFiles(tmp_path, max_bytes=10**9, max_age_s=10, max_total_bytes=10**9)
    files.write([b"{}\n"], now=100.0)
    files.write([b"{}\n"], now=105.0)
    first = files.path
    files.write([b"{}\n"], now=111.0)
    assert files.path != first and first is not None and not first.exists()
    files.tick(now=115.0)
    assert files.path is not None, "not old yet"
    files.tick(now=121.5)
    assert files.path is None
    closed = sorted(tmp_path.glob(f"*{CLOSED_SUFFIX}"))
    assert [f.read_bytes().count(b"\n") for f in closed] == [2, 1]
    assert not list(tmp_path.glob(f"*{OPEN_SUFFIX}"))


def test_closed_files_are_pruned_oldest_first_to_the_total_size(tmp_path: Path) -> None:
    files = RotatingFiles(tmp_path, max_bytes=1000, max_age_s=3600, max_total_bytes=2500)
    line = b"z" * 999 + b"\n"
    for i in range(6):  # one file per line: 1000 bytes each
        files.write([line.replace(b"z", str(i).encode(), 1)], now=float(i))
    files.close()
    kept = sorted(tmp_path.glob("capture-*"))
    assert [f.read_bytes()[:1] for f in kept] == [b"4", b"5"], "the two newest files (2000 <= 2500 bytes)"


def test_part_files_of_dead_processes_are_recovered(tmp_path: Path) -> None:
    files = RotatingFiles(tmp_path, max_bytes=1000, max_age_s=3600, max_total_bytes=10**9)
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = tmp_path / f"capture-{files.host}-{dead.pid}-20260101T000000Z-000001{OPEN_SUFFIX}"
    orphan.write_bytes(b"{}\n")
    live = tmp_path / f"capture-{files.host}-1-20260101T000000Z-000001{OPEN_SUFFIX}"  # pid 1 is alive
    live.write_bytes(b"{}\n")
    files.write([b"{}\n"], now=0.0)
    assert (
        not orphan.exists()
        and orphan.with_name(orphan.name.removesuffix(OPEN_SUFFIX) + CLOSED_SUFFIX).exists()
    )
    assert live.exists(), "another live process's open file is left alone"
    files.close()


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    files = RotatingFiles(tmp_path, max_bytes=10**6, max_age_s=3600, max_total_bytes=10**9)
    writer = CaptureWriter(files, queue_size=3, start=False)  # the thread starts late: the queue fills
    dropped = sample("serving_capture_dropped_total", model="qfull", reason="queue_full")
    written = sample("serving_capture_written_total", model="qfull")
    for i in range(10):
        writer.offer(0.0, served("qfull", f"q-{i}"))
    assert sample("serving_capture_dropped_total", model="qfull", reason="queue_full") == dropped + 7
    writer.thread.start()
    writer.close()
    assert [r["request_id"] for r in lines_of(tmp_path)] == ["q-0", "q-1", "q-2"]
    assert sample("serving_capture_written_total", model="qfull") == written + 3


def test_a_directory_that_cannot_be_written_drops_and_counts(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    writer = CaptureWriter(RotatingFiles(blocker / "capture", 10**6, 3600, 10**9), queue_size=10)
    before = sample("serving_capture_dropped_total", model="nodir", reason="write_error")
    writer.offer(0.0, served("nodir"))
    writer.offer(0.0, served("nodir"))
    writer.close()
    assert sample("serving_capture_dropped_total", model="nodir", reason="write_error") == before + 2


@pytest.mark.parametrize("rows", [1, 3])
def test_non_contiguous_arrays_are_written_as_lists(tmp_path: Path, rows: int) -> None:
    writer = CaptureWriter(RotatingFiles(tmp_path, 10**6, 3600, 10**9), queue_size=10)
    record = served("nc", "nc", rows)
    record.outputs = {"y": np.asfortranarray(np.arange(rows * 3, dtype=np.float64).reshape(rows, 3))[:, ::2]}
    writer.offer(0.0, record)
    writer.close()
    [line] = lines_of(tmp_path)
    assert line["outputs"] == {"y": record.outputs["y"].tolist()}


@pytest.mark.parametrize(
    "entry",
    [{"capture": {"percent": 101}}, {"capture": {"percent": -1}}, {"capture": {"rate": 1}},
     {"feedback": {"keep_s": 0}}, {"feedback": {"enabled": True, "window": 5}}],
)  # fmt: skip
def test_serving_yaml_refuses_bad_capture_and_feedback_entries(entry: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ModelPolicy.model_validate(entry)


def test_feedback_is_off_unless_its_entry_is_there() -> None:
    settings = Settings(feedback_keep_s=5.0)
    assert not ModelPolicy().effective(settings).feedback
    on = ModelPolicy.model_validate({"feedback": {}}).effective(settings)
    assert on.feedback and on.feedback_keep_s == 5.0
    assert not ModelPolicy.model_validate({"feedback": {"enabled": False}}).effective(settings).feedback
