"""Drift detection in process, over real ONNX model versions: the window's ring buffer, the scores, the
bounded queue, serving.yaml (on, off, window size, hot reload) and the binning thread."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from bench.synthetic import synthetic_metadata
from service.dataplane import DataPlane, InferenceRequest
from service.models.config import ConfigError, load_config
from service.models.registry import ModelRegistry
from service.ops.drift import Drift, Window
from service.ops.drift_stats import DRIFT, STABLE, build_reference, group_histograms, psi
from service.schema import ModelMetadata, Reference
from service.settings import Settings
from tests.service.modelfactory import remove_version, write_scale_version

RNG = np.random.default_rng(7)
TRAINING = RNG.normal(size=(2000, 4)).astype(np.float32)
"""The rows the scale models' references describe (y = x * 1: the outputs are the inputs)."""


def attach_reference(version_dir: Path, inputs: np.ndarray, outputs: np.ndarray) -> Reference:
    """Give a written version (tests.service.modelfactory) the reference of these rows, as the exporter does."""
    reference = build_reference(inputs, outputs, None, f"{len(inputs)} test rows")
    path = version_dir / "metadata.json"
    document = json.loads(path.read_text())
    document["reference"] = reference.model_dump(mode="json")
    path.write_text(json.dumps(document))
    return reference


def write_model(repo: Path, name: str, version: int = 1, policy: str = "") -> Path:
    directory = write_scale_version(repo, name, version, 1.0)
    attach_reference(directory, TRAINING, TRAINING)
    if policy:
        (repo / "serving.yaml").write_text(f"models:\n  {name}:\n    {policy}\n")
    return directory


def settings(repo: Path, **kw: object) -> Settings:
    """The binning thread sleeps for an hour unless a test asks otherwise: tests call flush()."""
    return Settings(repository=repo, poll_interval_s=0, **{"drift_interval_s": 3600.0, **kw})  # type: ignore[arg-type]


async def started(repo: Path, **kw: object) -> tuple[DataPlane, Drift]:
    dp = DataPlane(ModelRegistry(settings(repo, **kw)))
    await dp.registry.start()
    (drift,) = [f for f in dp.ops.features if isinstance(f, Drift)]
    return dp, drift


async def send(dp: DataPlane, model: str, rows: np.ndarray, per_request: int = 25) -> None:
    for start in range(0, len(rows), per_request):
        await dp.infer(InferenceRequest(model, {None: rows[start : start + per_request]}, "test"))


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def scores(model: str, reference: Reference) -> dict[str, float]:
    return {
        g.name: gauge("serving_drift_score", model=model, version="1", feature=g.name)
        for g in reference.groups
    }  # type: ignore[misc]


def metadata_with(reference: Reference) -> ModelMetadata:
    meta = synthetic_metadata(
        "w", 1, inputs=[{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
        outputs=[{"name": "y", "dtype": "float32", "shape": [-1, 4]}], example={"x": [[1, 2, 3, 4]]},
    )  # fmt: skip
    return meta.model_copy(update={"reference": reference})


# ----- the window ------------------------------------------------------------------------------------------
def test_window_totals_are_the_bins_of_exactly_the_last_rows() -> None:
    reference = build_reference(TRAINING, TRAINING, None, "rows")
    window = Window("window_unit", 1, metadata_with(reference), capacity=100)
    sent = []
    for size in [1, 7, 30, 99, 3, 150, 1, 64, 2]:  # batches smaller and larger than the window
        rows = RNG.normal(size=(size, 4)).astype(np.float32)
        window.add(rows, rows)
        sent.append(rows)
        last = np.concatenate(sent)[-100:]
        assert window.rows == len(last)
        for group, totals in zip(reference.groups, window.totals, strict=True):
            assert (totals == group_histograms(group, last, last).sum(axis=0)).all(), (size, group.name)
    expected = {
        g.name: psi(g.proportions, group_histograms(g, last, last).sum(axis=0)) for g in reference.groups
    }
    assert window.scores() == pytest.approx(expected)


def test_scores_are_low_for_training_like_rows_and_high_for_shifted_ones() -> None:
    reference = build_reference(TRAINING, TRAINING, None, "rows")
    window = Window("window_scores", 1, metadata_with(reference), capacity=500)
    like = RNG.normal(size=(500, 4)).astype(np.float32)
    window.add(like, like)
    assert max(window.scores().values()) < STABLE, window.scores()
    shifted = like + np.array([0.0, 0.0, 0.0, 1.5], np.float32)  # only the last feature moves
    window.add(shifted, shifted)
    got = window.scores()
    assert max(got["f0"], got["f1"], got["f2"]) < STABLE
    assert got["f3"] > DRIFT and got["prediction"] > STABLE, got


# ----- the feature in the data plane -----------------------------------------------------------------------
def test_served_rows_are_scored_per_version_and_feature(tmp_path: Path) -> None:
    write_model(tmp_path, "drift_dp", policy="drift: {window_rows: 200}")
    reference = ModelMetadata.model_validate_json(
        (tmp_path / "drift_dp/1/metadata.json").read_text()
    ).reference
    assert reference is not None

    async def main() -> None:
        dp, drift = await started(tmp_path)
        assert drift in dp.ops.observers and dp.ops.active
        await send(dp, "drift_dp", RNG.normal(size=(300, 4)).astype(np.float32))
        assert gauge("serving_drift_window_rows", model="drift_dp", version="1") == 0  # nothing binned yet
        assert drift.windows[("drift_dp", 1)].queued == 200  # the 100 oldest would leave the window at once
        assert drift.flush() == 200
        assert gauge("serving_drift_window_rows", model="drift_dp", version="1") == 200
        calm = scores("drift_dp", reference)
        assert set(calm) == {"f0", "f1", "f2", "f3", "prediction"} and max(calm.values()) < STABLE, calm
        await send(dp, "drift_dp", RNG.uniform(2, 4, size=(200, 4)).astype(np.float32))
        drift.flush()
        drifted = scores("drift_dp", reference)
        assert min(drifted.values()) > DRIFT, drifted
        dp.ops.close()
        await dp.registry.close()

    asyncio.run(main())


def test_a_full_queue_drops_and_counts_rows(tmp_path: Path) -> None:
    write_model(tmp_path, "drift_q")

    async def main() -> None:
        dp, drift = await started(tmp_path, drift_queue_rows=50)
        rows = RNG.normal(size=(20, 4)).astype(np.float32)
        for _ in range(3):  # 20 + 20 fit, the third request would make 60
            await send(dp, "drift_q", rows, per_request=20)
        assert (
            gauge("serving_drift_dropped_rows_total", model="drift_q", version="1", reason="queue_full") == 20
        )
        assert drift.flush() == 40
        await send(dp, "drift_q", rows, per_request=20)  # room again
        assert drift.flush() == 20
        assert gauge("serving_drift_window_rows", model="drift_q", version="1") == 60
        assert (
            gauge("serving_drift_dropped_rows_total", model="drift_q", version="1", reason="queue_full") == 20
        )
        dp.ops.close()
        await dp.registry.close()

    asyncio.run(main())


def test_the_queue_keeps_only_the_newest_rows_a_window_can_use(tmp_path: Path) -> None:
    """A version queues about ``window_rows`` rows at most: older requests leave the queue as newer ones
    come (their arrays are no longer held), nothing is dropped as queue_full although more rows than
    ``drift_queue_rows`` were answered between two flushes, and the window bins the last rows answered."""
    write_model(tmp_path, "drift_newest", policy="drift: {window_rows: 50}")

    async def main() -> None:
        dp, drift = await started(tmp_path, drift_queue_rows=100)
        window = drift.windows[("drift_newest", 1)]
        calm = RNG.normal(size=(200, 4)).astype(np.float32)
        shifted = RNG.uniform(2, 4, size=(60, 4)).astype(np.float32)
        await send(dp, "drift_newest", calm, per_request=20)
        assert window.queued == 60 and drift.waiting == 60  # 3 requests: without the oldest, 40 < 50
        await send(dp, "drift_newest", shifted, per_request=20)
        assert window.queued == 60 and len(window.queue) == 3
        dropped = gauge(
            "serving_drift_dropped_rows_total", model="drift_newest", version="1", reason="queue_full"
        )
        assert not dropped, dropped
        assert drift.flush() == 50
        assert drift.waiting == 0 and window.queued == 0 and not window.queue
        assert window.rows == 50
        assert min(window.scores().values()) > DRIFT, window.scores()  # only the shifted rows count
        dp.ops.close()
        await dp.registry.close()

    asyncio.run(main())


def test_above_the_sampling_budget_rows_are_sampled_at_random_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within ``drift_sample_rows_per_s`` every row is queued; once an interval's rate is above it, each
    row of the next interval (single-row and multi-row requests alike) is queued with probability
    budget / rate, and the rows let go are counted as ``sampled`` when that interval ends. A fake clock
    stands in for the interval's time (the binning thread sleeps for an hour here)."""
    # the model's own budget (serving.yaml) over the setting's
    write_model(tmp_path, "drift_sampled", policy="drift: {window_rows: 5000, sample_rows_per_s: 0.25}")
    now = [0.0]
    monkeypatch.setattr("service.ops.drift.perf_counter", lambda: now[0])

    def sampled() -> float:
        value = gauge(
            "serving_drift_dropped_rows_total", model="drift_sampled", version="1", reason="sampled"
        )
        return value or 0.0

    async def main() -> None:
        # budget 0.25 rows/s over an interval of 3600 s: 900 rows per interval
        dp, drift = await started(tmp_path, drift_sample_rows_per_s=1e9)
        window = drift.windows[("drift_sampled", 1)]
        rows = RNG.normal(size=(2000, 4)).astype(np.float32)
        await send(dp, "drift_sampled", rows[:1800], per_request=1)
        assert window.queued == 1800 and window.keep == 1.0  # the first interval: no rate known yet
        assert drift.flush() == 1800
        now[0] = 3600.0  # 1,800 rows (and this one) in the last interval: twice the budget
        await send(dp, "drift_sampled", rows, per_request=1)
        assert window.keep == pytest.approx(900 / 1801)
        kept = window.queued
        assert 900 < kept < 1100, kept  # 2,000 rows at p = 0.4997: 999 +- 22 (3 sigma: +- 67)
        assert sampled() == 0  # counted when the interval ends
        now[0] = 7200.0
        await send(dp, "drift_sampled", rows[:100], per_request=100)  # opens the next interval
        assert sampled() == 2000 - kept
        assert window.keep == pytest.approx(900 / 2099)  # 1,999 rows after the one that opened it, + 100
        await send(dp, "drift_sampled", rows, per_request=100)
        multi = window.queued - kept
        assert 800 < multi < 1000, multi  # 2,100 rows at p = 0.4288: 900 +- 23 (3 sigma: +- 68)
        queued = np.concatenate([i for i, _ in window.queue])
        assert np.isin(queued, rows).all()  # the rows kept are rows that were sent, not copies or zeros
        assert drift.flush() == kept + multi
        assert window.rows == 1800 + kept + multi
        dp.ops.close()
        await dp.registry.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("policy", "setting", "on"),
    [
        ("", True, True),
        ("drift: {enabled: false}", True, False),
        ("", False, False),
        ("drift: {enabled: true}", False, True),
    ],
)
def test_serving_yaml_and_the_setting_turn_drift_on_and_off(
    tmp_path: Path, policy: str, setting: bool, on: bool
) -> None:
    write_model(tmp_path, "drift_onoff", policy=policy)

    async def main() -> None:
        dp, drift = await started(tmp_path, drift_enabled=setting)
        assert (drift in dp.ops.observers) is on
        assert dp.ops.active is on  # nothing else is on here: off costs the data plane one check
        await dp.registry.close()

    asyncio.run(main())


def test_versions_without_a_reference_are_not_observed(tmp_path: Path) -> None:
    write_scale_version(tmp_path, "drift_none", 1, 1.0)

    async def main() -> None:
        dp, drift = await started(tmp_path)
        assert drift.windows == {} and drift not in dp.ops.observers
        await dp.registry.close()

    asyncio.run(main())


def test_a_reference_that_does_not_fit_the_signature_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wide = RNG.normal(size=(100, 6)).astype(np.float32)
    attach_reference(write_scale_version(tmp_path, "drift_misfit", 1, 1.0), wide, wide[:, :4])

    async def main() -> None:
        with caplog.at_level(logging.WARNING, logger="service.ops.drift"):
            dp, drift = await started(tmp_path)
        assert drift.windows == {}
        assert (
            "drift is off for drift_misfit version 1: group 'f4': index 4 beyond the 4 values" in caplog.text
        )
        await dp.registry.close()

    asyncio.run(main())


def test_hot_reload_resizes_and_retires_windows(tmp_path: Path) -> None:
    write_model(tmp_path, "drift_hot", policy="drift: {window_rows: 100}")

    async def main() -> None:
        dp, drift = await started(tmp_path)
        first = drift.windows[("drift_hot", 1)]
        await send(dp, "drift_hot", RNG.normal(size=(50, 4)).astype(np.float32))
        drift.flush()
        await dp.registry.sync()  # nothing changed: the same window keeps its rows
        assert drift.windows[("drift_hot", 1)] is first and first.rows == 50
        assert first.budget_per_s == 250.0  # the setting's default
        policy = "drift: {window_rows: 100, sample_rows_per_s: 40}"
        (tmp_path / "serving.yaml").write_text(f"models:\n  drift_hot:\n    {policy}\n")
        await dp.registry.sync()  # a new budget: the same window, rows kept
        assert drift.windows[("drift_hot", 1)] is first and first.rows == 50 and first.budget_per_s == 40
        (tmp_path / "serving.yaml").write_text("models:\n  drift_hot:\n    drift: {window_rows: 30}\n")
        await dp.registry.sync()
        resized = drift.windows[("drift_hot", 1)]
        assert resized is not first and resized.capacity == 30 and resized.rows == 0
        write_model(tmp_path, "drift_hot", version=2)
        remove_version(tmp_path, "drift_hot", 1)
        await dp.registry.sync()
        await dp.registry.sync()
        assert list(drift.windows) == [("drift_hot", 2)]
        assert gauge("serving_drift_window_rows", model="drift_hot", version="1") == 0
        dp.ops.close()
        await dp.registry.close()

    asyncio.run(main())


def test_the_thread_bins_without_being_asked(tmp_path: Path) -> None:
    write_model(tmp_path, "drift_thread")

    async def main() -> None:
        dp, drift = await started(tmp_path, drift_interval_s=0.05)
        await send(dp, "drift_thread", RNG.normal(size=(75, 4)).astype(np.float32))
        deadline = time.monotonic() + 5
        while gauge("serving_drift_window_rows", model="drift_thread", version="1") != 75:
            assert time.monotonic() < deadline, "the drift thread did not bin the rows within 5 s"
            await asyncio.sleep(0.05)
        assert drift.waiting == 0 and not drift.windows[("drift_thread", 1)].queue
        dp.ops.close()
        await dp.registry.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("policy", "fragment"),
    [
        ("drift: {window_rows: 5}", "window_rows"),
        ("drift: {sample_rows_per_s: 0}", "sample_rows_per_s"),
        ("drift: {size: 10}", "size"),
        ("drift: off", "drift"),
    ],
)
def test_bad_drift_entries_in_serving_yaml_are_refused(tmp_path: Path, policy: str, fragment: str) -> None:
    (tmp_path / "serving.yaml").write_text(f"models:\n  m:\n    {policy}\n")
    with pytest.raises(ConfigError, match=fragment):
        load_config(tmp_path)


def test_the_window_size_and_sampling_budget_fall_back_to_the_settings(tmp_path: Path) -> None:
    (tmp_path / "serving.yaml").write_text(
        "models:\n  a:\n    drift: {window_rows: 50, sample_rows_per_s: 20}\n"
    )
    config = load_config(tmp_path)
    base = Settings(repository=tmp_path, drift_window_rows=777, drift_sample_rows_per_s=99)
    assert config.policy("a").effective(base).drift_window_rows == 50
    assert config.policy("b").effective(base).drift_window_rows == 777
    assert config.policy("a").effective(base).drift_sample_rows_per_s == 20
    assert config.policy("b").effective(base).drift_sample_rows_per_s == 99
    assert config.policy("b").effective(base).drift is True
