"""How a BentoML worker tells its first start from a restart after a crash (:func:`first_start`)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

from service.bento.drain import first_start


@pytest.fixture
def arbiter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private temporary folder and a fixed parent pid, as under one ``bentoml serve``."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr("os.getppid", lambda: 4242)
    return tmp_path


def start(monkeypatch: pytest.MonkeyPatch, worker_id: int, workers: int = 2) -> bool:
    monkeypatch.setattr(sys, "argv", ["serve", "--worker-id", str(worker_id)])
    return first_start(workers)


def test_outside_bentomls_workers_every_start_is_a_first(
    monkeypatch: pytest.MonkeyPatch, arbiter: Path
) -> None:
    monkeypatch.setattr(sys, "argv", ["python"])
    assert first_start(2) and first_start(2)
    assert not list(arbiter.iterdir())


def test_the_same_id_again_is_a_restart(monkeypatch: pytest.MonkeyPatch, arbiter: Path) -> None:
    assert start(monkeypatch, 1) and start(monkeypatch, 2)
    assert not start(monkeypatch, 1)
    assert not start(monkeypatch, 2)


def test_a_replacement_with_a_new_id_is_a_restart(monkeypatch: pytest.MonkeyPatch, arbiter: Path) -> None:
    """circus gives a replacement the lowest free id: a new one while the dead worker is not reaped yet."""
    assert start(monkeypatch, 1) and start(monkeypatch, 2)
    assert not start(monkeypatch, 3)


def test_another_servers_workers_do_not_count(monkeypatch: pytest.MonkeyPatch, arbiter: Path) -> None:
    assert start(monkeypatch, 1) and start(monkeypatch, 2)
    monkeypatch.setattr("os.getppid", lambda: 4343)
    assert start(monkeypatch, 1)
