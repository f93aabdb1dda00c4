"""The OpenVINO runtime in this process: real OpenVINO on this CPU, the quick-trained CNN, ONNX Runtime as
the reference (same file, same precision: the same classes, outputs within a tolerance)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import pytest

from service.models.registry import ModelRegistry
from service.runtimes.base import Runtime
from service.runtimes.factory import create_runtime
from service.runtimes.openvino import OpenVinoRuntime, cpu_has_bf16
from service.schema import ModelMetadata
from service.settings import Settings

TOLERANCE = {"fp32": 1e-5, "int8": 0.01}  # int8: the two engines round differently (0.005 seen)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """256 MNIST test images, raw 0-255, ``[256, 28, 28, 1]``."""
    from training.data import load_mnist

    return load_mnist(limit_train=1, limit_test=256).x_test


def runtime(kind: str, trained_repo: Path, precision: str) -> Runtime:
    directory = trained_repo / "cnn" / "1"
    meta = ModelMetadata.model_validate_json((directory / "metadata.json").read_bytes())
    built = create_runtime(kind, directory, meta, ["CPUExecutionProvider"], threads=1, precision=precision)
    built.load()
    return built


def assert_same_answers(reference: np.ndarray, got: np.ndarray, tolerance: float) -> None:
    """Outputs within ``tolerance``; the same class wherever the reference's top two are further apart
    than that (a near-tie may fall either way and still be right)."""
    assert got.shape == reference.shape and float(np.max(np.abs(got - reference))) <= tolerance
    top2 = np.sort(reference, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * tolerance
    # the quick CNN is ~71 % right and its margins are small (median top-two gap ~0.1): at bf16's tolerance
    # (0.05) about half the digits are clear-cut, at fp32's and int8's nearly all
    assert clear.mean() >= 0.25, (
        f"only {clear.mean():.0%} of the digits are clear-cut: the check means little"
    )
    assert np.array_equal(got.argmax(axis=1)[clear], reference.argmax(axis=1)[clear])


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_openvino_answers_like_onnx_runtime(trained_repo: Path, digits: np.ndarray, precision: str) -> None:
    ours, reference = runtime("openvino", trained_repo, precision), runtime("onnx", trained_repo, precision)
    assert isinstance(ours, OpenVinoRuntime) and ours.precision == precision and ours.inline_ok
    assert ours.provider == ("OpenVINO CPU" if precision == "fp32" else "OpenVINO CPU int8")
    assert_same_answers(
        reference.predict({"pixels": digits})["output_0"],
        ours.predict({"pixels": digits})["output_0"],
        TOLERANCE[precision],
    )


def test_one_compiled_model_takes_every_batch_size_with_the_configured_settings(
    trained_repo: Path, digits: np.ndarray
) -> None:
    ours = runtime("openvino", trained_repo, "fp32")
    whole = ours.predict({"pixels": digits[:64]})["output_0"]
    for rows in (1, 3, 64):
        out = ours.predict({"pixels": digits[:rows]})["output_0"]
        assert out.shape == (rows, 10) and np.allclose(out, whole[:rows], atol=1e-6)
    compiled = ours._compiled
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1, "threads = the onnx_threads setting"
    assert str(compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32, "fp32 is asked for, not left"
    assert compiled.inputs[0].get_partial_shape()[0].is_dynamic


def test_bf16_runs_only_where_the_cpu_has_it(
    trained_repo: Path, digits: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    """This project's CPU (AMD EPYC Zen 3, AVX2) has no bf16: fp32 with a warning, reported as fp32."""
    with caplog.at_level(logging.WARNING, logger="service.runtimes.openvino"):
        ours = runtime("openvino", trained_repo, "bf16")
    hint = ours._compiled.get_property("INFERENCE_PRECISION_HINT")
    if cpu_has_bf16(ov.Core()):
        assert ours.precision == "bf16" and hint == ov.Type.bf16 and ours.provider == "OpenVINO CPU bf16"
        assert not caplog.records
        return
    assert ours.precision == "fp32" and hint == ov.Type.f32 and ours.provider == "OpenVINO CPU"
    assert "precision bf16 asked for, but this CPU has no bf16" in caplog.text
    reference = runtime("onnx", trained_repo, "fp32").predict({"pixels": digits})["output_0"]
    assert_same_answers(reference, ours.predict({"pixels": digits})["output_0"], TOLERANCE["fp32"])


def test_unload_releases_the_model(trained_repo: Path) -> None:
    ours = runtime("openvino", trained_repo, "fp32")
    ours.unload()
    assert ours.provider == "none"
    with pytest.raises(RuntimeError, match="before load"):
        ours.predict({"pixels": np.zeros((1, 28, 28, 1), np.float32)})


def test_versions_compile_and_warm_up_one_at_a_time(
    trained_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three OpenVINO versions loading together through the registry: from each one's ``load`` to its last
    warm-up batch no other runs (``OpenVinoRuntime.load_lock``), and all three end up ready."""
    repo = tmp_path / "repo"
    names = ["ov-a", "ov-b", "ov-c"]
    for name in names:
        shutil.copytree(trained_repo / "cnn" / "1", repo / name / "1")
    (repo / "serving.yaml").write_text(
        "models:\n" + "".join(f"  {n}: {{runtime: openvino}}\n" for n in names)
    )
    spans: dict[int, list[float]] = {}
    load, predict = OpenVinoRuntime.load, OpenVinoRuntime.predict

    def timed_load(self: OpenVinoRuntime) -> None:
        spans[id(self)] = [time.perf_counter()] * 2
        load(self)
        time.sleep(0.05)  # widen the window two unserialised loads would share

    def timed_predict(self: OpenVinoRuntime, inputs: Any) -> Any:
        out = predict(self, inputs)
        spans[id(self)][1] = time.perf_counter()
        return out

    monkeypatch.setattr(OpenVinoRuntime, "load", timed_load)
    monkeypatch.setattr(OpenVinoRuntime, "predict", timed_predict)

    async def main() -> list[str]:
        registry = ModelRegistry(Settings(repository=repo, poll_interval_s=0))
        await registry.start()
        states = [str(registry.resolve(n).state) for n in names]
        await registry.close()
        return states

    assert asyncio.run(main()) == ["ready"] * 3
    ordered = sorted(spans.values())
    assert len(ordered) == 3
    assert all(first[1] <= second[0] for first, second in pairwise(ordered)), ordered
