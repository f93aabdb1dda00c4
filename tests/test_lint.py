"""The code stays ruff-clean (lint and format) and type-checks (mypy), as the project's style requires."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

RUFF = Path(sys.executable).with_name("ruff")
MYPY = Path(sys.executable).with_name("mypy")


def test_ruff_check_and_format_are_clean() -> None:
    for args in (["check", "."], ["format", "--check", "."]):
        out = subprocess.run([str(RUFF), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"ruff {' '.join(args)}:\n{out.stdout[-3000:]}{out.stderr[-1000:]}"


def test_mypy_finds_no_type_errors_in_service_and_training() -> None:
    out = subprocess.run([str(MYPY)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"mypy:\n{out.stdout[-3000:]}{out.stderr[-1000:]}"
    assert "Success: no issues found" in out.stdout
