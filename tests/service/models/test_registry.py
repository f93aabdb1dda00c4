"""The registry in-process: a new version is warmed up before it becomes the default; config errors."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.dataplane import DataPlane, InferenceRequest
from service.errors import NotFound, Unavailable
from service.models.config import CONFIG_FILE
from service.models.registry import SHADOWED_NAMES, ModelRegistry
from service.models.version import State
from service.runtimes.onnx import OnnxRuntime
from service.settings import Settings
from tests.service.modelfactory import write_scale_version


def plane(repo: Path) -> DataPlane:
    return DataPlane(ModelRegistry(Settings(repository=repo, poll_interval_s=0)))


def req(**kw: object) -> InferenceRequest:
    return InferenceRequest("m", {None: np.ones((1, 4), np.float32)}, "test", **kw)  # type: ignore[arg-type]


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_a_new_version_becomes_the_default_only_after_its_warm_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_scale_version(tmp_path, "m", 1, 1.0)
    original = OnnxRuntime.predict
    entered, release = threading.Event(), threading.Event()
    seen_while_warming: list[tuple[int | None, State]] = []  # (default version, v2 state) per warm-up call
    dp = plane(tmp_path)
    reg = dp.registry

    def slow_predict(self: OnnxRuntime, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.directory.name == "2" and not release.is_set():
            sv2 = reg.models["m"][2]
            seen_while_warming.append((dp.default_version("m"), sv2.state))
            entered.set()
            release.wait(timeout=10)  # the first warm-up call blocks until the test lets it go
        return original(self, inputs)

    monkeypatch.setattr(OnnxRuntime, "predict", slow_predict)

    async def main() -> None:
        await reg.start()
        old = reg.resolve("m")
        assert old.version == 1
        write_scale_version(tmp_path, "m", 2, 2.0)
        sync = asyncio.get_running_loop().create_task(reg.sync())
        try:
            assert await asyncio.to_thread(entered.wait, 10), "version 2 was never warmed up"
            for _ in range(5):  # warm-up is blocked: the old version answers every default request
                got = await dp.infer(req())
                assert (got.version, got.outputs["y"][0, 0]) == (1, 1.0)
                assert dp.default_version("m") == 1
                assert reg.models["m"][2].state is State.LOADING
                assert dp.ready()
            with pytest.raises(Unavailable, match="version 2 of model 'm' is loading"):
                await dp.infer(req(version=2))
            assert not sync.done()
        finally:
            release.set()
        await asyncio.wait_for(sync, 10)
        assert reg.models["m"][2].state is State.READY
        got = await dp.infer(req())
        assert (got.version, got.outputs["y"][0, 0]) == (2, 2.0)
        await wait_until(lambda: old.state is State.UNLOADED)  # latest 1: version 1 leaves
        with pytest.raises(NotFound):
            await dp.infer(req(version=1))
        await reg.close()

    asyncio.run(main())
    assert seen_while_warming == [(1, State.LOADING)]


def test_a_version_whose_warm_up_fails_never_becomes_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_scale_version(tmp_path, "m", 1, 1.0)
    original = OnnxRuntime.predict

    def failing_predict(self: OnnxRuntime, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.directory.name == "2":
            raise RuntimeError("warm-up exploded")
        return original(self, inputs)

    monkeypatch.setattr(OnnxRuntime, "predict", failing_predict)

    async def main() -> None:
        dp = plane(tmp_path)
        await dp.registry.start()
        write_scale_version(tmp_path, "m", 2, 2.0)
        await dp.registry.sync()
        sv2 = dp.registry.models["m"][2]
        assert (sv2.state, sv2.error) == (State.FAILED, "warm-up exploded")
        assert dp.default_version("m") == 1
        assert (await dp.infer(req())).version == 1
        with pytest.raises(Unavailable, match="failed: warm-up exploded"):
            await dp.infer(req(version=2))
        await dp.registry.close()

    asyncio.run(main())


def test_a_serving_yaml_that_is_not_utf8_keeps_the_previous_config_and_loading_goes_on(
    tmp_path: Path,
) -> None:
    write_scale_version(tmp_path, "m", 1, 1.0)
    write_scale_version(tmp_path, "m", 2, 2.0)
    config = tmp_path / CONFIG_FILE
    config.write_text("models:\n  m:\n    policy: all\n    labels: {stable: 1}\n")

    async def main() -> None:
        dp = plane(tmp_path)
        await dp.registry.start()
        config.write_bytes(b"models:\n  m:\n    policy: all\n\xff\xfe garbage\n")
        write_scale_version(tmp_path, "m", 3, 3.0)
        await dp.registry.sync()  # must not raise
        assert dp.registry.config_error and str(config) in dp.registry.config_error
        assert (await dp.infer(req(label="stable"))).version == 1
        assert [v.version for v in dp.versions("m") if v.ready] == [1, 2, 3]  # policy all still holds
        assert (await dp.infer(req())).version == 3
        config.write_text("models:\n  m:\n    policy: all\n    labels: {stable: 2}\n")
        await dp.registry.sync()
        assert dp.registry.config_error is None
        assert (await dp.infer(req(label="stable"))).version == 2
        await dp.registry.close()

    asyncio.run(main())


def test_a_serving_yaml_error_at_start_serves_with_the_defaults(tmp_path: Path) -> None:
    write_scale_version(tmp_path, "m", 1, 1.0)
    write_scale_version(tmp_path, "m", 2, 2.0)
    (tmp_path / CONFIG_FILE).write_bytes(b"\xff\xfe\x00")

    async def main() -> None:
        dp = plane(tmp_path)
        await dp.registry.start()  # must not raise
        assert dp.ready()
        assert dp.registry.config_error is not None
        assert [v.version for v in dp.versions("m")] == [2]  # defaults: latest 1
        await dp.registry.close()

    asyncio.run(main())


def test_a_model_whose_name_a_route_takes_is_served_with_a_warning_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model named ``stats`` loads and serves; the log says where its V2 metadata is instead, once."""
    write_scale_version(tmp_path, "stats", 1, 2.0)
    write_scale_version(tmp_path, "m", 1, 1.0)

    async def main() -> None:
        dp = plane(tmp_path)
        with caplog.at_level(logging.WARNING, logger="service.models"):
            await dp.registry.start()
            await dp.registry.sync()
        answer = await dp.infer(InferenceRequest("stats", {None: np.ones((1, 4), np.float32)}, "test"))
        assert answer.version == 1
        await dp.registry.close()

    asyncio.run(main())
    named = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.getMessage().startswith("model ")
    ]
    assert named == [f"model stats: {SHADOWED_NAMES['stats']}"], named  # once, and not for model m
    assert "/v2/models/stats/versions/<version>" in named[0]


def test_a_selected_version_that_fails_is_warned_about_once_per_failure_not_at_every_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The repository is polled every few seconds: the warning that the newest version did not load (and
    which older one still serves) comes once, and again only for a later failure after a recovery."""
    write_scale_version(tmp_path, "m", 1, 1.0)
    original = OnnxRuntime.predict

    def failing_predict(self: OnnxRuntime, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.directory.name in ("2", "4"):
            raise RuntimeError("warm-up exploded")
        return original(self, inputs)

    monkeypatch.setattr(OnnxRuntime, "predict", failing_predict)

    async def main() -> None:
        dp = plane(tmp_path)
        with caplog.at_level(logging.WARNING, logger="service.models"):
            await dp.registry.start()
            write_scale_version(tmp_path, "m", 2, 2.0)
            for _ in range(4):
                await dp.registry.sync()
            assert (await dp.infer(req())).version == 1
            write_scale_version(tmp_path, "m", 3, 3.0)  # recovers: 3 loads, 1 and 2 retire
            await dp.registry.sync()
            assert (await dp.infer(req())).version == 3
            write_scale_version(tmp_path, "m", 4, 4.0)
            for _ in range(3):
                await dp.registry.sync()
        await dp.registry.close()

    asyncio.run(main())
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "selected" in r.getMessage()
    ]
    assert warned == [
        "model m: none of its selected versions [2] loaded; keeping version(s) [1]",
        "model m: none of its selected versions [4] loaded; keeping version(s) [3]",
    ], warned
