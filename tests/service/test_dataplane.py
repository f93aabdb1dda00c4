"""Data plane + registry in-process: resolution, validation, failures, hot reload, drain on unload."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from service.dataplane import DataPlane, InferenceRequest
from service.errors import InvalidInput, NotFound, Unavailable
from service.models.registry import ModelRegistry
from service.models.version import State
from service.settings import Settings
from tests.service.modelfactory import remove_version, write_scale_version


def plane(repo: Path) -> DataPlane:
    return DataPlane(ModelRegistry(Settings(repository=repo, poll_interval_s=0)))


def req(model: str = "m", rows: int = 1, **kw: object) -> InferenceRequest:
    return InferenceRequest(model, {None: np.ones((rows, 4), np.float32)}, "test", **kw)  # type: ignore[arg-type]


def test_default_version_is_the_newest_and_explicit_versions_and_labels_resolve(tmp_path: Path) -> None:
    for v in (1, 2, 3):
        write_scale_version(tmp_path, "m", v, float(v))
    (tmp_path / "serving.yaml").write_text(
        "models:\n  m:\n    policy: all\n    labels: {stable: 1, canary: 3}\n"
    )

    async def main() -> None:
        dp = plane(tmp_path)
        await dp.registry.start()
        assert dp.ready()
        assert (await dp.infer(req())).outputs["y"][0, 0] == 3.0
        assert (await dp.infer(req(version=2))).outputs["y"][0, 0] == 2.0
        got = await dp.infer(req(label="stable"))
        assert (got.version, got.outputs["y"][0, 0]) == (1, 1.0)
        with pytest.raises(NotFound, match=r"label 'beta'.*labels: \['canary', 'stable'\]"):
            await dp.infer(req(label="beta"))
        with pytest.raises(
            NotFound, match="version 9 of model 'm' not found; served versions: \\[1, 2, 3\\]"
        ):
            await dp.infer(req(version=9))
        with pytest.raises(NotFound, match="model 'nope' not found; available models: \\['m'\\]"):
            await dp.infer(req("nope"))
        await dp.registry.close()

    asyncio.run(main())


def test_latest_policy_serves_only_the_newest_by_default(tmp_path: Path) -> None:
    write_scale_version(tmp_path, "m", 1, 1.0)
    write_scale_version(tmp_path, "m", 2, 2.0)

    async def main() -> None:
        dp = plane(tmp_path)
        await dp.registry.start()
        assert [v.version for v in dp.versions("m")] == [2]
        with pytest.raises(NotFound):
            await dp.infer(req(version=1))
        await dp.registry.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        (
            {None: np.ones((1, 5), np.float32)},
            r"expected shape \[-1, 4\] \(first dimension = batch\), got \[1, 5\]",
        ),
        ({None: np.ones((4,), np.float32)}, r"got \[4\]"),
        ({None: np.ones((0, 4), np.float32)}, "empty"),
        ({"z": np.ones((1, 4), np.float32)}, r"expected \['x'\], got \['z'\]"),
        ({None: np.array([["a"] * 4])}, "expected float32"),
    ],
)
def test_bad_inputs_are_400_with_expected_and_got(tmp_path: Path, inputs: dict, fragment: str) -> None:
    write_scale_version(tmp_path, "m", 1, 1.0)

    async def main() -> None:
        dp = plane(tmp_path)
        await dp.registry.start()
        with pytest.raises(InvalidInput, match=fragment):
            await dp.infer(InferenceRequest("m", inputs, "test"))
        assert (await dp.infer(req())).outputs["y"].shape == (1, 4)  # still serving
        await dp.registry.close()

    asyncio.run(main())


def test_integer_inputs_are_cast_to_the_model_dtype(tmp_path: Path) -> None:
    write_scale_version(tmp_path, "m", 1, 0.5)

    async def main() -> None:
        dp = plane(tmp_path)
        await dp.registry.start()
        out = await dp.infer(InferenceRequest("m", {"x": np.array([[2, 4, 6, 8]])}, "test"))
        np.testing.assert_array_equal(out.outputs["y"], [[1, 2, 3, 4]])
        assert out.outputs["y"].dtype == np.float32
        await dp.registry.close()

    asyncio.run(main())


def test_corrupt_artifact_fails_only_that_version(tmp_path: Path) -> None:
    write_scale_version(tmp_path, "good", 1, 1.0)
    bad = write_scale_version(tmp_path, "bad", 1, 1.0)
    (bad / "model.onnx").write_bytes(b"garbage")

    async def main() -> None:
        dp = plane(tmp_path)
        await dp.registry.start()
        assert dp.ready()
        assert (await dp.infer(req("good"))).outputs["y"][0, 0] == 1.0
        with pytest.raises(Unavailable, match=r"no ready version.*failed: artifact corrupt: model\.onnx"):
            await dp.infer(req("bad"))
        ready, reason = dp.model_ready("bad")
        assert not ready and "artifact corrupt" in reason
        assert dp.versions("bad")[0].state is State.FAILED
        await dp.registry.close()

    asyncio.run(main())


def test_hot_reload_swaps_default_and_drains_the_old_version(tmp_path: Path) -> None:
    write_scale_version(tmp_path, "m", 1, 1.0)

    async def main() -> None:
        dp = plane(tmp_path)
        reg = dp.registry
        await reg.start()
        old = reg.resolve("m")
        old.acquire()  # an in-flight request on version 1
        write_scale_version(tmp_path, "m", 2, 2.0)
        await reg.sync()
        assert (await dp.infer(req())).outputs["y"][0, 0] == 2.0
        await asyncio.sleep(0.05)
        assert old.state is State.UNLOADING  # waits for its in-flight request
        old.release()
        for _ in range(100):
            if old.state is State.UNLOADED:
                break
            await asyncio.sleep(0.01)
        assert old.state is State.UNLOADED
        remove_version(tmp_path, "m", 2)
        write_scale_version(tmp_path, "m", 3, 3.0)
        await reg.sync()
        assert (await dp.infer(req())).outputs["y"][0, 0] == 3.0
        await reg.close()

    asyncio.run(main())


def test_a_failing_new_version_keeps_the_old_one_serving(tmp_path: Path) -> None:
    write_scale_version(tmp_path, "m", 1, 1.0)

    async def main() -> None:
        dp = plane(tmp_path)
        await dp.registry.start()
        bad = write_scale_version(tmp_path, "m", 2, 2.0)
        (bad / "model.onnx").write_bytes(b"\x00" * 10)
        await dp.registry.sync()
        assert (await dp.infer(req())).version == 1
        states = {v.version: str(v.state) for v in dp.versions("m")}
        assert states == {1: "ready", 2: "failed"}
        await dp.registry.close()

    asyncio.run(main())


def test_broken_serving_yaml_keeps_serving_with_the_previous_config(tmp_path: Path) -> None:
    write_scale_version(tmp_path, "m", 1, 1.0)

    async def main() -> None:
        dp = plane(tmp_path)
        await dp.registry.start()
        (tmp_path / "serving.yaml").write_text("models: [not, a, mapping]\n")
        await dp.registry.sync()
        assert dp.registry.config_error and "serving.yaml" in dp.registry.config_error
        assert (await dp.infer(req())).version == 1
        await dp.registry.close()

    asyncio.run(main())
