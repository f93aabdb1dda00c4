"""The traffic split in process, over real ONNX model versions: serving.yaml validation, weights over
seeded draws, sticky keys across routers (workers) and processes, fallback from unready variants, and
what the data plane answers and counts."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from service import context
from service.dataplane import DataPlane, InferenceRequest
from service.errors import Unavailable
from service.models.config import ConfigError, load_config
from service.ops.traffic import TrafficSplit, bucket
from tests.service.modelfactory import write_scale_version
from tests.service.test_dataplane import plane, req

ROOT = Path(__file__).resolve().parents[3]


def write_repo(repo: Path, traffic: str, versions: tuple[int, ...] = (1, 2, 3), extra: str = "") -> Path:
    for v in versions:
        write_scale_version(repo, "m", v, float(v))
    (repo / "serving.yaml").write_text(
        "models:\n  m:\n    policy: all\n    labels: {stable: 1, canary: 2}\n"
        f"    traffic: {traffic}\n{extra}"
    )
    return repo


async def started(repo: Path) -> DataPlane:
    dp = plane(repo)
    await dp.registry.start()
    return dp


def draws(split: TrafficSplit, n: int, keys: list[str] | None = None) -> Counter[str]:
    """The variants ``split`` picks for ``n`` requests (keyed by ``keys`` when given)."""
    chosen: Counter[str] = Counter()
    for i in range(n):
        request = InferenceRequest("m", {}, "test")
        variant = split.route(request, keys[i] if keys else None)
        assert variant is not None and request.version is not None
        chosen[f"{variant}->{request.version}"] += 1
    return chosen


def split_for(dp: DataPlane, seed: int) -> TrafficSplit:
    """A router over ``dp``'s registry and serving.yaml with a seeded random source (a worker's)."""
    split = TrafficSplit(dp.registry, random.Random(seed))
    assert split.configure(dp.registry.config)
    return split


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ----- serving.yaml ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "fragment"),
    [
        ("traffic: {beta: 1}", "traffic: 'beta' is neither a label of this model (labels: ['stable'])"),
        ("traffic: {stable: 0, 2: 0}", "weights must be finite, >= 0 and one > 0"),
        ("traffic: {stable: -5, 2: 10}", "weights must be finite, >= 0 and one > 0"),
        ("traffic: {stable: .inf}", "weights must be finite"),
        ("traffic: {}", "weights must be finite, >= 0 and one > 0"),
        ("traffic: {2: 1, '2': 1}", "a variant is named twice"),
        ("traffic: {'a b': 1}", "'a b' is not a label or version"),
        ("traffic: {0: 1}", "'0' is neither a label"),
        ("traffic: [stable]", "traffic"),
        ("shadow: {target: beta, percent: 10}", "shadow.target: 'beta' is neither a label"),
        ("shadow: {target: 2, percent: 0}", "percent"),
        ("shadow: {target: 2, percent: 101}", "percent"),
        ("shadow: {target: 2}", "percent"),
        ("shadow: {target: 2, percent: 5, extra: 1}", "extra"),
    ],
)
def test_a_bad_split_or_shadow_is_a_config_error_naming_file_and_field(
    tmp_path: Path, policy: str, fragment: str
) -> None:
    (tmp_path / "serving.yaml").write_text(f"models:\n  m:\n    labels: {{stable: 1}}\n    {policy}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    assert str(tmp_path / "serving.yaml") in str(err.value) and "models.m" in str(err.value)
    assert fragment in str(err.value)


def test_variants_are_labels_or_version_numbers(tmp_path: Path) -> None:
    (tmp_path / "serving.yaml").write_text(
        "models:\n  m:\n    labels: {stable: 1}\n    traffic: {stable: 9, 3: 1, '4': 0}\n"
        "    shadow: {target: stable, percent: 2.5}\n"
    )
    policy = load_config(tmp_path).policy("m")
    assert {str(k): policy.variant_version(k) for k in policy.traffic or {}} == {"stable": 1, "3": 3, "4": 4}
    assert policy.shadow is not None and policy.variant_version(policy.shadow.target) == 1


def test_a_broken_split_on_hot_reload_keeps_the_previous_one(tmp_path: Path) -> None:
    write_repo(tmp_path, "{stable: 1}")

    async def main() -> None:
        dp = await started(tmp_path)
        assert (await dp.infer(req())).variant == "stable"
        (tmp_path / "serving.yaml").write_text("models:\n  m:\n    policy: all\n    traffic: {nope: 1}\n")
        await dp.registry.sync()
        assert dp.registry.config_error and "'nope' is neither a label" in dp.registry.config_error
        got = await dp.infer(req())
        assert (got.version, got.variant) == (1, "stable")
        await dp.registry.close()

    asyncio.run(main())


# ----- the split -------------------------------------------------------------------------------------------
def test_weights_are_respected_over_seeded_draws(tmp_path: Path) -> None:
    write_repo(tmp_path, "{stable: 70, canary: 20, 3: 10, 4: 0}", versions=(1, 2, 3, 4))

    async def main() -> None:
        dp = await started(tmp_path)
        n = 20000
        chosen = draws(split_for(dp, 7), n)
        assert set(chosen) == {"stable->1", "canary->2", "3->3"}  # weight 0: never chosen
        shares = {k: c / n for k, c in chosen.items()}
        assert shares == pytest.approx({"stable->1": 0.7, "canary->2": 0.2, "3->3": 0.1}, abs=0.015)
        assert draws(split_for(dp, 7), 200) == draws(split_for(dp, 7), 200)  # the seed decides
        await dp.registry.close()

    asyncio.run(main())


def test_sticky_keys_keep_their_variant_across_routers_and_follow_the_weights(tmp_path: Path) -> None:
    write_repo(tmp_path, "{stable: 80, canary: 20}")

    async def main() -> None:
        dp = await started(tmp_path)
        one, two = split_for(dp, 1), split_for(dp, 2)  # two workers, no shared memory
        keys = [f"user-{i}" for i in range(4000)]
        first, second = [], []
        for key in keys:
            r1, r2 = InferenceRequest("m", {}, "test"), InferenceRequest("m", {}, "test")
            first.append(one.route(r1, key))
            second.append(two.route(r2, key))
        assert first == second
        assert all(one.route(InferenceRequest("m", {}, "test"), "user-7") == first[7] for _ in range(50))
        assert first.count("canary") / len(keys) == pytest.approx(0.2, abs=0.025)
        await dp.registry.close()

    asyncio.run(main())


def test_the_sticky_bucket_is_the_same_in_another_process() -> None:
    """blake2b, not Python's per-process salted ``hash``: a fresh interpreter computes the same points."""
    keys = ["user-1", "alice", "ü-ñ", ""]
    here = [bucket(k, "cnn") for k in keys]
    code = f"from service.ops.traffic import bucket; print([bucket(k, 'cnn') for k in {keys!r}])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""})  # fmt: skip
    assert out.stdout.strip() == repr(here)
    assert all(0 <= u < 1 for u in here) and len(set(here)) == len(keys)
    assert bucket("user-1", "cnn") != bucket("user-1", "mlp")  # per model: splits are independent


def test_an_unready_variant_gets_no_traffic_and_the_fallback_is_counted(tmp_path: Path) -> None:
    write_repo(tmp_path, "{stable: 50, canary: 50}", versions=(1,))
    broken = write_scale_version(tmp_path, "m", 2, 2.0)
    (broken / "model.onnx").write_bytes(b"not onnx")

    async def main() -> None:
        dp = await started(tmp_path)
        assert {v.version: str(v.state) for v in dp.versions("m")} == {1: "ready", 2: "failed"}
        before = sample("serving_traffic_fallbacks_total", model="m", variant="canary")
        split = split_for(dp, 3)
        assert draws(split, 400) == {"stable->1": 400}
        fallbacks = sample("serving_traffic_fallbacks_total", model="m", variant="canary") - before
        assert 150 < fallbacks < 250  # the draws that picked canary, about half
        # a key whose bucket lies on canary stays on stable while canary is down
        key = next(k for k in (f"k{i}" for i in range(100)) if bucket(k, "m") >= 0.5)
        assert {split.route(InferenceRequest("m", {}, "test"), key) for _ in range(5)} == {"stable"}
        await dp.registry.close()

    asyncio.run(main())


def test_no_ready_variant_is_a_503_naming_each_variant(tmp_path: Path) -> None:
    write_repo(tmp_path, "{canary: 1, 9: 1}", versions=(1,))
    broken = write_scale_version(tmp_path, "m", 2, 2.0)
    (broken / "model.onnx").write_bytes(b"not onnx")

    async def main() -> None:
        dp = await started(tmp_path)
        with pytest.raises(Unavailable) as err:
            await dp.infer(req())
        assert str(err.value) == (
            "no variant of the traffic split of model 'm' is ready: "
            "{'canary': 'version 2 failed', '9': 'version 9 not served'}"
        )
        assert (await dp.infer(req(version=1))).version == 1  # naming a version bypasses the split
        await dp.registry.close()

    asyncio.run(main())


# ----- through the data plane ------------------------------------------------------------------------------
def test_the_answer_and_the_call_carry_the_variant_and_the_split_is_counted(tmp_path: Path) -> None:
    write_repo(tmp_path, "{canary: 1}")

    async def main() -> None:
        dp = await started(tmp_path)
        assert dp.ops.active and dp.ops.router is not None
        before = sample("serving_traffic_requests_total", model="m", variant="canary", version="2")
        call = context.begin(None, "someone")
        got = await dp.infer(req())
        assert (got.version, got.variant, float(got.outputs["y"][0, 0])) == (2, "canary", 2.0)
        assert (call.version, call.variant) == (2, "canary")
        assert (
            sample("serving_traffic_requests_total", model="m", variant="canary", version="2") == before + 1
        )
        call = context.begin(None, "someone")
        for named in (req(version=3), req(label="stable")):  # a named version or label is not split
            got = await dp.infer(named)
            assert got.variant is None and call.variant is None
        assert (
            sample("serving_traffic_requests_total", model="m", variant="canary", version="2") == before + 1
        )
        await dp.registry.close()

    asyncio.run(main())


def test_without_a_split_or_shadow_operations_stay_off_and_hot_reload_turns_them_on(tmp_path: Path) -> None:
    for v in (1, 2):
        write_scale_version(tmp_path, "m", v, float(v))
    (tmp_path / "serving.yaml").write_text("models:\n  m: {policy: all}\n")

    async def main() -> None:
        dp = await started(tmp_path)
        assert not dp.ops.active  # nothing on: the data plane pays one attribute check
        assert (await dp.infer(req())).variant is None
        (tmp_path / "serving.yaml").write_text("models:\n  m: {policy: all, traffic: {1: 1}}\n")
        await dp.registry.sync()
        assert dp.ops.active and (await dp.infer(req())).variant == "1"
        (tmp_path / "serving.yaml").write_text("models:\n  m: {policy: all}\n")
        await dp.registry.sync()
        assert not dp.ops.active and (await dp.infer(req())).version == 2
        await dp.registry.close()

    asyncio.run(main())
