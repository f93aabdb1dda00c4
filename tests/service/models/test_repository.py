"""``scan``: which directories of a repository count as model versions, and ``Snapshot.selected``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.models.config import CONFIG_FILE, RepositoryConfig
from service.models.repository import scan
from tests.service.modelfactory import write_scale_version


def version_dir(repo: Path, name: str, version: str, metadata: bool = True) -> Path:
    """A bare version directory (scan opens no artifact, so ``metadata.json`` need not be valid)."""
    path = repo / name / version
    path.mkdir(parents=True)
    if metadata:
        (path / "metadata.json").write_text(json.dumps({"name": name}))
    return path


def test_complete_versions_are_found_with_their_directories(tmp_path: Path) -> None:
    one = write_scale_version(tmp_path, "m", 1, 1.0)
    two = write_scale_version(tmp_path, "m", 2, 2.0)
    other = write_scale_version(tmp_path, "other", 7, 7.0)
    snap = scan(tmp_path)
    assert snap.root == tmp_path
    assert snap.versions == {"m": {1: one, 2: two}, "other": {7: other}}


def test_a_missing_or_empty_repository_has_no_models(tmp_path: Path) -> None:
    assert scan(tmp_path / "nope").versions == {}
    assert scan(tmp_path).versions == {}


def test_dot_directories_are_ignored_even_when_they_hold_a_complete_version(tmp_path: Path) -> None:
    write_scale_version(tmp_path, "m", 1, 1.0)
    staged = write_scale_version(tmp_path / "scratch", "m", 2, 2.0)
    staged.rename(tmp_path / ".staging-abc")  # a finished export that was not renamed into place yet
    version_dir(tmp_path, ".hidden", "1")  # a model directory starting with a dot
    version_dir(tmp_path, "m", ".2")  # a version directory starting with a dot
    (tmp_path / "scratch").rename(tmp_path / ".scratch")
    assert (tmp_path / ".staging-abc" / "metadata.json").is_file()
    assert set(scan(tmp_path).versions) == {"m"}
    assert set(scan(tmp_path).versions["m"]) == {1}


def test_plain_files_are_ignored_at_both_levels(tmp_path: Path) -> None:
    version_dir(tmp_path, "m", "1")
    (tmp_path / "README.md").write_text("not a model")
    (tmp_path / "m" / "2").write_text("a file named like a version")
    (tmp_path / "m" / "notes.txt").write_text("x")
    assert scan(tmp_path).versions == {"m": {1: tmp_path / "m" / "1"}}


def test_version_directories_without_metadata_are_ignored(tmp_path: Path) -> None:
    version_dir(tmp_path, "m", "1")
    half = version_dir(tmp_path, "m", "2", metadata=False)
    (half / "model.onnx").write_bytes(b"half-written")
    (version_dir(tmp_path, "m", "3", metadata=False) / "metadata.json").mkdir()  # not a file
    version_dir(tmp_path, "empty", "1", metadata=False)
    assert scan(tmp_path).versions == {"m": {1: tmp_path / "m" / "1"}}  # "empty" has no version: no model
    (half / "metadata.json").write_text("{}")
    assert set(scan(tmp_path).versions["m"]) == {1, 2}


@pytest.mark.parametrize(
    "name", ["0", "00", "-1", "+1", "1.0", "1e3", "v1", " 1", "1 ", "latest", "١", "²", "١٢", "1²", "Ⅻ"]
)
def test_names_that_are_not_positive_ascii_integers_are_not_versions(tmp_path: Path, name: str) -> None:
    version_dir(tmp_path, "m", "5")
    version_dir(tmp_path, "m", name)
    assert scan(tmp_path).versions == {"m": {5: tmp_path / "m" / "5"}}


def test_only_unicode_digit_versions_means_no_model(tmp_path: Path) -> None:
    version_dir(tmp_path, "m", "١")  # ARABIC-INDIC DIGIT ONE: str.isdigit() is true, int() works
    version_dir(tmp_path, "m", "²")  # SUPERSCRIPT TWO: str.isdigit() is true, int() raises
    assert scan(tmp_path).versions == {}


@pytest.mark.parametrize(("name", "number"), [("1", 1), ("42", 42), ("01", 1), ("1000000", 1_000_000)])
def test_ascii_digit_names_above_zero_are_versions(tmp_path: Path, name: str, number: int) -> None:
    path = version_dir(tmp_path, "m", name)
    assert scan(tmp_path).versions == {"m": {number: path}}


def test_scan_reads_serving_yaml_unless_given_a_config(tmp_path: Path) -> None:
    version_dir(tmp_path, "m", "1")
    (tmp_path / CONFIG_FILE).write_text("models:\n  m: {policy: all}\n")
    assert scan(tmp_path).config.policy("m").policy == "all"
    given = RepositoryConfig.model_validate({"models": {"m": {"latest": 3}}})
    assert scan(tmp_path, given).config is given


def test_selected_applies_each_models_policy(tmp_path: Path) -> None:
    for name in ("newest", "two", "every", "some", "plain"):
        for v in (1, 2, 3):
            version_dir(tmp_path, name, str(v))
    (tmp_path / CONFIG_FILE).write_text(
        "models:\n"
        "  two: {latest: 2}\n"
        "  every: {policy: all}\n"
        "  some: {policy: specific, versions: [1, 3, 9]}\n"
        "  newest: {latest: 1}\n"
        "  absent: {policy: all}\n"  # configured but not in the repository: not selected
    )
    snap = scan(tmp_path)
    chosen = snap.selected()
    assert {name: sorted(v) for name, v in chosen.items()} == {
        "newest": [3],
        "two": [2, 3],
        "every": [1, 2, 3],
        "some": [1, 3],
        "plain": [3],  # not configured: latest 1
    }
    assert chosen["some"][3] == tmp_path / "some" / "3"
    assert sorted(snap.versions["two"]) == [1, 2, 3]  # selected() leaves the full listing alone


def test_selected_keeps_a_model_whose_policy_selects_nothing_as_empty(tmp_path: Path) -> None:
    version_dir(tmp_path, "m", "1")
    (tmp_path / CONFIG_FILE).write_text("models:\n  m: {policy: specific, versions: [2]}\n")
    assert scan(tmp_path).selected() == {"m": {}}
