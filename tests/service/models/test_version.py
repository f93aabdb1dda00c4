"""One version's load: failures are contained and explained; unexpected ones keep their traceback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from service.models import version as version_module
from service.models.config import ModelPolicy
from service.models.version import ServedVersion, State
from service.runtimes.base import ArtifactError
from service.settings import Settings
from tests.service.modelfactory import write_scale_version


class FailingRuntime:
    """A runtime whose ``load`` raises ``error`` (stands in for a framework bug we cannot provoke)."""

    provider = "none"
    load_lock = None  # loads in parallel, as the runtime interface's default

    def __init__(self, error: Exception) -> None:
        self.error = error

    def load(self) -> None:
        raise self.error


def load_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception) -> ServedVersion:
    directory = write_scale_version(tmp_path / "repo", "m", 1, 1.0)
    monkeypatch.setattr(version_module, "create_runtime", lambda *_a, **_k: FailingRuntime(error))
    sv = ServedVersion("m", 1, directory, "onnx")
    asyncio.run(sv.load(ModelPolicy().effective(Settings(repository=tmp_path / "repo"))))
    return sv


@pytest.mark.parametrize(
    ("error", "traceback_logged"),
    [
        (ArtifactError("artifact corrupt: model.onnx does not match its recorded sha256"), False),
        (FileNotFoundError(2, "No such file", "model.onnx"), False),
        (RuntimeError("something nobody expected"), True),
        (KeyError("weights"), True),
    ],
)
def test_failed_load_marks_only_the_version_and_logs(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
    traceback_logged: bool,
) -> None:
    with caplog.at_level(logging.ERROR, logger="service.models"):
        sv = load_with(monkeypatch, tmp_path, error)
    assert sv.state is State.FAILED and sv.error and sv.batcher is None
    record = next(r for r in caplog.records if "failed to load" in r.getMessage())
    assert (record.exc_info is not None) is traceback_logged
    assert ("Traceback" in caplog.text) is traceback_logged


def test_view_is_a_read_only_snapshot(tmp_path: Path) -> None:
    directory = write_scale_version(tmp_path / "repo", "m", 1, 1.0)
    sv = ServedVersion("m", 1, directory, "onnx")
    asyncio.run(sv.load(ModelPolicy().effective(Settings(repository=tmp_path / "repo"))))
    view = sv.view()
    assert view.ready and view.provider == "CPUExecutionProvider" and view.platform == "onnx_onnxv1"
    with pytest.raises(AttributeError):
        view.state = State.FAILED  # type: ignore[misc]
    asyncio.run(sv.retire())
    assert view.state is State.READY and sv.view().state is State.UNLOADED and sv.view().provider is None
