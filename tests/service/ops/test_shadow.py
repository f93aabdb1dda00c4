"""Shadow traffic in process, over real ONNX model versions: the primary's answer comes first and is
untouched, the bounded queue and the busy / unavailable / incompatible drops are counted, mirrored
requests go through the target's batcher, and agreement (classifiers) or absolute difference
(regressors) is recorded; plus the comparison functions on their own."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from service.dataplane import DataPlane, InferenceRequest, InferenceResponse
from service.ops import Served
from service.ops import shadow as shadow_module
from service.ops.shadow import Comparison, Shadow, compare, top_classes
from service.schema import ModelMetadata
from tests.service.modelfactory import write_scale_version
from tests.service.test_dataplane import plane

LABELS = ["a", "b", "c", "d"]
X = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [0.0, 5.0, 1.0, 1.0]], np.float32)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def write_repo(repo: Path, name: str, scales: dict[int, float], shadow: str, labels: bool = True) -> None:
    for version, scale in scales.items():
        write_scale_version(repo, name, version, scale, labels=LABELS if labels else None)
    (repo / "serving.yaml").write_text(f"models:\n  {name}:\n    policy: all\n    shadow: {shadow}\n")


async def started(repo: Path) -> tuple[DataPlane, Shadow]:
    dp = plane(repo)
    await dp.registry.start()
    (shadow,) = [f for f in dp.ops.observers if isinstance(f, Shadow)]
    return dp, shadow


def infer(name: str, version: int, x: np.ndarray = X) -> InferenceRequest:
    return InferenceRequest(name, {None: x}, "test", version=version)


def served(name: str, version: int, scale: float, x: np.ndarray = X) -> Served:
    return Served(name, version, "test", "rid", {"x": x}, {"y": x * scale}, 0.001)


# ----- comparisons ----------------------------------------------------------------------------------------
def metadata(labels: list[str] | None, width: int) -> ModelMetadata:
    spec = {"name": "y", "dtype": "float32", "shape": [-1, width]}
    return ModelMetadata.model_validate(
        {"name": "m", "version": 1, "created": "now", "inputs": [{**spec, "name": "x"}], "outputs": [spec],
         "labels": labels, "input_contract": "", "example": {}, "metrics": {}, "dataset": {},
         "training_seconds": 0, "framework_versions": {}, "artifacts": {},
         "parity": {"samples": 256, "tolerance": 0, "onnx_vs_saved_model": 0, "onnx_vs_keras": 0,
                    "passed": True}}
    )  # fmt: skip


def test_top_class_of_softmax_and_sigmoid_classifiers_and_none_for_regressors() -> None:
    assert top_classes(metadata(LABELS, 4), {"y": X}).tolist() == [3, 0, 1]  # type: ignore[union-attr]
    sigmoid = np.array([[0.2], [0.5], [0.9]], np.float32)
    assert top_classes(metadata(["no", "yes"], 1), {"y": sigmoid}).tolist() == [0, 1, 1]  # type: ignore[union-attr]
    assert top_classes(metadata(None, 4), {"y": X}) is None
    assert top_classes(metadata(["a", "b", "c"], 4), {"y": X}) is None  # scores do not match the labels


def test_compare_counts_agreeing_rows_or_measures_the_mean_absolute_difference() -> None:
    flipped = X[:, ::-1].copy()  # rows 0 and 1 swap their top class, row 2 moves from b to c
    assert compare(metadata(LABELS, 4), {"y": X}, {"y": X * 3}) == Comparison(agree=3, disagree=0)
    assert compare(metadata(LABELS, 4), {"y": X}, {"y": flipped}) == Comparison(agree=0, disagree=3)
    diff = compare(metadata(None, 4), {"y": X}, {"y": X * 3})
    assert diff is not None and diff.abs_diff == pytest.approx(float(np.mean(np.abs(2 * X))))
    assert compare(metadata(None, 4), {"y": X}, {"z": X}) is None  # nothing to line up


# ----- through the data plane -----------------------------------------------------------------------------
def test_the_primary_answers_first_untouched_and_the_shadow_agreement_follows(tmp_path: Path) -> None:
    write_repo(tmp_path, "sa", {1: 1.0, 2: 2.0, 3: -1.0}, "{target: 2, percent: 100}")

    async def main() -> None:
        dp, shadow = await started(tmp_path)
        before = {
            "agree": sample("serving_shadow_agreement_total", model="sa", primary="1", shadow="2", result="agree"),
            "runs": sample("serving_shadow_requests_total", model="sa", version="2", outcome="success"),
            "v2 requests": sample("serving_requests_total", model="sa", version="2", protocol="test",
                                  code="200", outcome="success"),
        }  # fmt: skip
        for primary in ("1", "3"):  # classifiers: both agreement series exist before any mirrored row
            labels = {"model": "sa", "primary": primary, "shadow": "2"}
            assert (
                REGISTRY.get_sample_value("serving_shadow_agreement_total", {**labels, "result": "agree"})
                == 0.0
            )
        got = await dp.infer(infer("sa", 1))
        np.testing.assert_array_equal(got.outputs["y"], X)  # version 1's own answer
        assert len(shadow.queue) == 1 and shadow._task is not None  # queued, not run: the answer came first
        assert (
            sample("serving_shadow_requests_total", model="sa", version="2", outcome="success")
            == before["runs"]
        )
        await shadow.idle()
        np.testing.assert_array_equal(got.outputs["y"], X)  # the shadow's x2 outputs went elsewhere
        assert (
            sample("serving_shadow_requests_total", model="sa", version="2", outcome="success")
            == before["runs"] + 1
        )
        assert sample(
            "serving_shadow_agreement_total", model="sa", primary="1", shadow="2", result="agree"
        ) == before["agree"] + len(X)
        assert sample("serving_shadow_duration_seconds_count", model="sa", version="2") >= 1
        # a mirrored request is not a request: serving_requests_total of version 2 did not move
        assert sample("serving_requests_total", model="sa", version="2", protocol="test", code="200",
                      outcome="success") == before["v2 requests"]  # fmt: skip
        # the target's own answers are not mirrored; version 3 (x -1) disagrees on every row
        await dp.infer(infer("sa", 2))
        await dp.infer(infer("sa", 3))
        assert len(shadow.queue) == 1
        await shadow.idle()
        assert (
            sample("serving_shadow_agreement_total", model="sa", primary="3", shadow="2", result="disagree")
            == 3
        )
        assert (
            sample("serving_shadow_agreement_total", model="sa", primary="3", shadow="2", result="agree") == 0
        )
        await dp.registry.close()

    asyncio.run(main())


def test_a_regressor_shadow_records_the_mean_absolute_difference(tmp_path: Path) -> None:
    write_repo(tmp_path, "sr", {1: 1.0, 2: 1.5}, "{target: 2, percent: 100}", labels=False)

    async def main() -> None:
        dp, shadow = await started(tmp_path)
        for _ in range(4):
            await dp.infer(infer("sr", 1))
            await shadow.idle()
        total = sample("serving_shadow_abs_diff_sum", model="sr", primary="1", shadow="2")
        assert sample("serving_shadow_abs_diff_count", model="sr", primary="1", shadow="2") == 4
        assert total / 4 == pytest.approx(float(np.mean(np.abs(X * 1.5 - X))), rel=1e-6)
        assert (
            sample("serving_shadow_agreement_total", model="sr", primary="1", shadow="2", result="agree") == 0
        )
        await dp.registry.close()

    asyncio.run(main())


def test_the_bounded_queue_drops_and_counts_what_does_not_fit(tmp_path: Path) -> None:
    write_repo(tmp_path, "sq", {1: 1.0, 2: 2.0}, "{target: 2, percent: 100}")

    async def main() -> None:
        dp, _ = await started(tmp_path)
        shadow = Shadow(dp.registry, queue_size=2)
        assert shadow.configure(dp.registry.config)
        dropped = sample("serving_shadow_dropped_total", model="sq", version="2", reason="queue_full")
        runs = sample("serving_shadow_requests_total", model="sq", version="2", outcome="success")
        for _ in range(5):  # back to back on the event loop: the worker task has not run yet
            shadow.observe(served("sq", 1, 1.0))
        assert len(shadow.queue) == 2
        assert (
            sample("serving_shadow_dropped_total", model="sq", version="2", reason="queue_full")
            == dropped + 3
        )
        await shadow.idle()
        assert sample("serving_shadow_requests_total", model="sq", version="2", outcome="success") == runs + 2
        await dp.registry.close()

    asyncio.run(main())


async def held(
    dp: DataPlane, name: str, version: int
) -> tuple[threading.Event, list[asyncio.Task[InferenceResponse]]]:
    """Real work that stays in ``version``'s batcher until the event is set: its runtime thread waits on
    the event, so one request's batch is running and a second request is queued behind it."""
    gate = threading.Event()
    batcher = dp.registry.models[name][version].batcher
    assert batcher is not None
    batcher.placement.executor.submit(gate.wait, 10)
    loop = asyncio.get_running_loop()
    real = [loop.create_task(dp.infer(infer(name, version)))]
    await asyncio.sleep(0.01)  # its batch has started (and waits for the runtime thread)
    real.append(loop.create_task(dp.infer(infer(name, version))))
    await asyncio.sleep(0.01)
    assert batcher.busy and batcher.queued_rows == len(X)
    return gate, real


@pytest.mark.parametrize("busy_version", [2, 1], ids=["target-busy", "primary-has-a-queue"])
def test_a_shadow_never_runs_while_real_work_waits(
    tmp_path: Path, busy_version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real work stays queued longer than the shadow's patience: the mirror is dropped as busy, unrun."""
    monkeypatch.setattr(shadow_module, "PATIENCE_S", 0.1)
    name = f"sb{busy_version}"
    write_repo(tmp_path, name, {1: 1.0, 2: 2.0}, "{target: 2, percent: 100}")

    async def main() -> None:
        dp, shadow = await started(tmp_path)
        busy = sample("serving_shadow_dropped_total", model=name, version="2", reason="busy")
        gate, real = await held(dp, name, busy_version)
        shadow.observe(served(name, 1, 1.0))
        await shadow.idle()  # gathered, waited its patience for the real work, dropped
        assert sample("serving_shadow_dropped_total", model=name, version="2", reason="busy") == busy + 1
        assert sample("serving_shadow_requests_total", model=name, version="2", outcome="success") == 0
        gate.set()
        assert [(await r).version for r in real] == [busy_version] * 2
        await shadow.idle()  # (version 1's real answers are mirrored too)
        runs = sample("serving_shadow_requests_total", model=name, version="2", outcome="success")
        shadow.observe(served(name, 1, 1.0))  # idle again: this one runs
        await shadow.idle()
        assert sample("serving_shadow_dropped_total", model=name, version="2", reason="busy") == busy + 1
        assert sample("serving_shadow_requests_total", model=name, version="2", outcome="success") == runs + 1
        await dp.registry.close()

    asyncio.run(main())


def test_a_shadow_waits_for_real_work_to_clear_within_its_patience(tmp_path: Path) -> None:
    """Real work that clears before the patience runs out: the mirror runs after it, not dropped."""
    write_repo(tmp_path, "sw", {1: 1.0, 2: 2.0}, "{target: 2, percent: 100}")

    async def main() -> None:
        dp, shadow = await started(tmp_path)
        gate, real = await held(dp, "sw", 1)
        shadow.observe(served("sw", 1, 1.0))
        loop = asyncio.get_running_loop()
        loop.call_later(shadow_module.GATHER_S + 0.05, gate.set)  # within the patience
        await shadow.idle()
        assert all(r.done() for r in real)  # the real requests were answered before the mirror ran
        assert sample("serving_shadow_dropped_total", model="sw", version="2", reason="busy") == 0
        # the waiting mirror, then those of the two real answers (version 1's, mirrored as they came)
        assert sample("serving_shadow_requests_total", model="sw", version="2", outcome="success") == 3
        await dp.registry.close()

    asyncio.run(main())


def test_an_unserved_or_incompatible_target_is_dropped_and_counted(tmp_path: Path) -> None:
    write_scale_version(tmp_path, "su", 1, 1.0)
    write_scale_version(tmp_path, "si", 1, 1.0)
    write_scale_version(tmp_path, "si", 2, 1.0, shape=[-1, 5])  # takes 5 features, not 4
    (tmp_path / "serving.yaml").write_text(
        "models:\n  su: {shadow: {target: 7, percent: 100}}\n"
        "  si: {policy: all, shadow: {target: 2, percent: 100}}\n"
    )

    async def main() -> None:
        dp, shadow = await started(tmp_path)
        gone = sample("serving_shadow_dropped_total", model="su", version="7", reason="unavailable")
        odd = sample("serving_shadow_dropped_total", model="si", version="2", reason="incompatible")
        assert (await dp.infer(infer("su", 1))).version == 1
        assert (await dp.infer(infer("si", 1))).version == 1
        await shadow.idle()
        assert (
            sample("serving_shadow_dropped_total", model="su", version="7", reason="unavailable") == gone + 1
        )
        assert (
            sample("serving_shadow_dropped_total", model="si", version="2", reason="incompatible") == odd + 1
        )
        # every drop series, and the comparison series of each other version, exist from the start (at 0),
        # so rates and alerts see the first increments too
        assert (
            REGISTRY.get_sample_value(
                "serving_shadow_abs_diff_count", {"model": "si", "primary": "1", "shadow": "2"}
            )
            == 0.0
        )
        assert (
            REGISTRY.get_sample_value(
                "serving_shadow_dropped_total", {"model": "si", "version": "2", "reason": "rejected"}
            )
            == 0.0
        )
        await dp.registry.close()

    asyncio.run(main())


def test_the_sampled_share_follows_percent(tmp_path: Path) -> None:
    write_repo(tmp_path, "sp", {1: 1.0, 2: 2.0}, "{target: 2, percent: 30}")

    async def main() -> None:
        dp, _ = await started(tmp_path)
        shadow = Shadow(dp.registry, queue_size=10_000, rng=random.Random(11))
        assert shadow.configure(dp.registry.config)
        for _ in range(5000):
            shadow.observe(served("sp", 1, 1.0))
        assert len(shadow.queue) / 5000 == pytest.approx(0.3, abs=0.03)
        shadow.queue.clear()
        await shadow.idle()
        await dp.registry.close()

    asyncio.run(main())


def test_queued_mirrors_of_one_primary_share_one_batch(tmp_path: Path) -> None:
    """Mirrors queued while one runs go to the target together (one runtime call per primary version, as
    the primary's own rows are batched), and each request's rows are compared with its own answer."""
    write_repo(tmp_path, "sb", {1: 1.0, 2: 2.0, 3: -1.0}, "{target: 2, percent: 100}")

    async def main() -> None:
        dp, shadow = await started(tmp_path)
        target = dp.registry.models["sb"][2].batcher
        assert target is not None
        calls: list[int] = []
        submit = target.submit

        def counting(arrays: dict[str, np.ndarray], rows: int, *args: object) -> object:
            calls.append(rows)
            return submit(arrays, rows, *args)  # type: ignore[arg-type]

        target.submit = counting  # type: ignore[method-assign]
        agree = sample("serving_shadow_agreement_total", model="sb", primary="1", shadow="2", result="agree")
        disagree = sample(
            "serving_shadow_agreement_total", model="sb", primary="3", shadow="2", result="disagree"
        )
        runs = sample("serving_shadow_requests_total", model="sb", version="2", outcome="success")
        for version, scale in ((1, 1.0), (1, 1.0), (1, 1.0), (1, 1.0), (3, -1.0), (3, -1.0)):
            shadow.observe(served("sb", version, scale))  # all queued before the drain task first runs
        await shadow.idle()
        assert calls == [4 * len(X), 2 * len(X)]  # primary 1's four requests, then primary 3's two
        assert sample(
            "serving_shadow_agreement_total", model="sb", primary="1", shadow="2", result="agree"
        ) == agree + 4 * len(X)
        assert sample(
            "serving_shadow_agreement_total", model="sb", primary="3", shadow="2", result="disagree"
        ) == disagree + 2 * len(X)
        assert sample("serving_shadow_requests_total", model="sb", version="2", outcome="success") == runs + 6
        await dp.registry.close()

    asyncio.run(main())
