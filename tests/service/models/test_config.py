"""``serving.yaml`` parsing: version policies, fallbacks to the server settings, validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.models.config import CONFIG_FILE, ConfigError, ModelPolicy, RepositoryConfig, load_config
from service.settings import Settings


# ----- ModelPolicy.select ------------------------------------------------------------------------
def test_latest_is_the_default_policy_and_serves_only_the_newest() -> None:
    policy = ModelPolicy()
    assert (policy.policy, policy.latest) == ("latest", 1)
    assert policy.select([2, 5, 1, 3]) == [5]


@pytest.mark.parametrize(
    ("latest", "available", "expected"),
    [
        (2, [1, 2, 3], [2, 3]),
        (2, [3, 1], [1, 3]),
        (3, [7, 4], [4, 7]),  # fewer versions than asked for: all of them
        (3, [9], [9]),
        (2, [], []),
    ],
)
def test_latest_n_serves_the_n_newest(latest: int, available: list[int], expected: list[int]) -> None:
    assert ModelPolicy(latest=latest).select(available) == expected


def test_all_serves_every_version_sorted() -> None:
    assert ModelPolicy(policy="all").select([3, 1, 10, 2]) == [1, 2, 3, 10]
    assert ModelPolicy(policy="all", latest=1).select([3, 1]) == [1, 3]  # `latest` only counts for latest


@pytest.mark.parametrize(
    ("versions", "available", "expected"),
    [
        ([1, 3], [1, 2, 3], [1, 3]),
        ([3, 1], [3, 2, 1], [1, 3]),
        ([1, 9], [1, 2, 3], [1]),  # 9 does not exist: not served, no error
        ([8, 9], [1, 2], []),
        ([], [1, 2], []),
    ],
)
def test_specific_serves_only_the_listed_versions_that_exist(
    versions: list[int], available: list[int], expected: list[int]
) -> None:
    assert ModelPolicy(policy="specific", versions=versions).select(available) == expected


def test_select_does_not_change_its_argument() -> None:
    available = [3, 1, 2]
    ModelPolicy(latest=2).select(available)
    assert available == [3, 1, 2]


# ----- ModelPolicy.effective ---------------------------------------------------------------------
SETTINGS = Settings(
    runtime="tensorflow",
    onnx_providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
    onnx_threads=3,
    max_batch_size=32,
    max_wait_ms=5.0,
    max_queue_rows=999,
)


def test_effective_takes_every_unset_field_from_the_settings() -> None:
    eff = ModelPolicy().effective(SETTINGS)
    assert eff.runtime == "tensorflow"
    assert eff.onnx_providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert eff.onnx_threads == 3
    assert eff.max_batch_size == 32
    assert eff.max_wait_ms == 5.0
    assert eff.max_queue_rows == 999


def test_effective_prefers_every_set_field() -> None:
    policy = ModelPolicy(
        runtime="onnx",
        onnx_providers=["CPUExecutionProvider"],
        max_batch_size=8,
        max_wait_ms=1.5,
        max_queue_rows=10,
    )
    eff = policy.effective(SETTINGS)
    assert eff.runtime == "onnx"
    assert eff.onnx_providers == ["CPUExecutionProvider"]
    assert eff.max_batch_size == 8
    assert eff.max_wait_ms == 1.5
    assert eff.max_queue_rows == 10
    assert eff.onnx_threads == 3  # not per model: always the server's


def test_effective_keeps_a_set_zero_wait_over_a_non_zero_setting() -> None:
    assert ModelPolicy(max_wait_ms=0).effective(SETTINGS).max_wait_ms == 0
    assert ModelPolicy().effective(SETTINGS).max_wait_ms == 5.0


def test_effective_fields_from_yaml_fall_back_one_by_one(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("models:\n  m:\n    max_batch_size: 4\n    max_wait_ms: 0\n")
    eff = load_config(tmp_path).policy("m").effective(SETTINGS)
    assert (eff.max_batch_size, eff.max_wait_ms) == (4, 0)
    assert (eff.runtime, eff.max_queue_rows) == ("tensorflow", 999)


# ----- validation --------------------------------------------------------------------------------
def test_empty_onnx_providers_is_rejected() -> None:
    with pytest.raises(ValidationError, match="onnx_providers"):
        ModelPolicy(onnx_providers=[])


@pytest.mark.parametrize(
    "fields",
    [{"latest": 0}, {"latest": -1}, {"max_batch_size": 0}, {"max_wait_ms": -1}, {"max_queue_rows": 0}],
)
def test_out_of_range_values_are_rejected(fields: dict[str, int]) -> None:
    with pytest.raises(ValidationError, match=next(iter(fields))):
        ModelPolicy(**fields)


def test_unknown_keys_are_rejected_per_model_and_at_the_top() -> None:
    with pytest.raises(ValidationError, match="lates"):
        RepositoryConfig.model_validate({"models": {"m": {"lates": 2}}})
    with pytest.raises(ValidationError, match="model"):
        RepositoryConfig.model_validate({"model": {"m": {}}})


def test_policy_of_an_unconfigured_model_is_the_default() -> None:
    config = RepositoryConfig.model_validate({"models": {"a": {"policy": "all"}}})
    assert config.policy("a").policy == "all"
    assert config.policy("b") == ModelPolicy()


# ----- load_config -------------------------------------------------------------------------------
def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path) == RepositoryConfig()
    assert load_config(tmp_path / "does-not-exist") == RepositoryConfig()


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "~\n"])
def test_empty_file_means_defaults(tmp_path: Path, text: str) -> None:
    (tmp_path / CONFIG_FILE).write_text(text)
    assert load_config(tmp_path) == RepositoryConfig()


def test_a_full_file_is_read(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text(
        "models:\n"
        "  cnn:\n"
        "    policy: specific\n"
        "    versions: [1, 3]\n"
        "    labels: {stable: 1, canary: 3}\n"
        "    runtime: keras\n"
        "  mlp:\n"
        "    latest: 2\n"
    )
    config = load_config(tmp_path)
    assert config.policy("cnn").select([1, 2, 3]) == [1, 3]
    assert config.policy("cnn").labels == {"stable": 1, "canary": 3}
    assert config.policy("cnn").runtime == "keras"
    assert config.policy("mlp").select([1, 2, 3]) == [2, 3]


@pytest.mark.parametrize(
    "text",
    [
        "models: [unclosed\n",
        "models:\n  m:\n    latest: 2\n   labels: {a: 1}\n",  # bad indentation
        "models:\n  m: {policy: latest\n",
    ],
)
def test_broken_yaml_is_a_config_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / CONFIG_FILE
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("models:\n  m:\n    latest: 0\n", "latest"),
        ("models:\n  m:\n    runtime: bogus\n", "runtime"),
        ("models:\n  m:\n    policy: newest\n", "policy"),
        ("models:\n  m:\n    onnx_providers: []\n", "onnx_providers"),
        ("models:\n  m:\n    versions: [one]\n", "versions"),
        ("models:\n  m:\n    labels: {stable: latest}\n", "labels"),
        ("models:\n  m:\n    colour: red\n", "colour"),
        ("modles:\n  m: {}\n", "modles"),
        ("models: [a, b]\n", "models"),
        ("- just\n- a list\n", "RepositoryConfig"),
    ],
)
def test_invalid_values_are_a_config_error_naming_the_file_and_field(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / CONFIG_FILE
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert fragment in message
    assert isinstance(info.value.__cause__, ValidationError)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_FILE
    path.write_bytes(b"models:\n  m: {latest: 2}\n\xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(path) in str(info.value)


def test_an_unreadable_config_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).mkdir()  # exists, but cannot be read as a file
    with pytest.raises(ConfigError, match=CONFIG_FILE):
        load_config(tmp_path)
