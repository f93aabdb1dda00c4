"""How a BentoML worker tells its first start from a restart after a crash (:func:`first_start`), and
when the server as a whole is ready (:class:`ServerReadiness`)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

from service.bento import workers
from service.bento.workers import ServerReadiness, first_start


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


def readiness(monkeypatch: pytest.MonkeyPatch, worker_id: int, workers: int = 2) -> ServerReadiness:
    monkeypatch.setattr(sys, "argv", ["serve", "--worker-id", str(worker_id)])
    return ServerReadiness(workers)


def test_the_server_is_ready_once_every_worker_has_been(
    monkeypatch: pytest.MonkeyPatch, arbiter: Path
) -> None:
    one, two = readiness(monkeypatch, 1), readiness(monkeypatch, 2)
    assert not one() and not two(), "nobody has loaded yet"
    one.mark_ready()
    assert not one() and not two(), "one worker of two: the server is not ready"
    two.mark_ready()
    assert one() and two()
    one.mark_ready()  # a later load changes nothing
    assert one()


def test_a_restarted_worker_does_not_take_the_server_out(
    monkeypatch: pytest.MonkeyPatch, arbiter: Path
) -> None:
    for worker_id in (1, 2):
        readiness(monkeypatch, worker_id).mark_ready()
    assert readiness(monkeypatch, 3)(), "a replacement (a new id) finds the server was ready"
    monkeypatch.setattr("os.getppid", lambda: 4343)
    assert not readiness(monkeypatch, 1)(), "another server's workers do not count"


def test_outside_bentoml_or_with_one_worker_it_is_always_ready(
    monkeypatch: pytest.MonkeyPatch, arbiter: Path
) -> None:
    assert readiness(monkeypatch, 1, workers=1)()
    monkeypatch.setattr(sys, "argv", ["python"])
    outside = ServerReadiness(2)
    outside.mark_ready()
    assert outside() and not list(arbiter.iterdir())


def test_a_new_server_with_the_same_pid_starts_afresh(monkeypatch: pytest.MonkeyPatch, arbiter: Path) -> None:
    """In a container ``bentoml serve`` is pid 1 on every start and ``/tmp`` may outlive the container:
    the folder is named after the server's start time too, so the last run's markers do not count."""
    started = [1000.0]

    class Parent:
        def __init__(self, pid: int) -> None:
            self.pid = pid

        def create_time(self) -> float:
            return started[0]

    monkeypatch.setattr(workers.psutil, "Process", Parent)
    assert start(monkeypatch, 1) and start(monkeypatch, 2)
    for worker_id in (1, 2):
        readiness(monkeypatch, worker_id).mark_ready()
    assert readiness(monkeypatch, 1)()
    started[0] = 2000.0  # the container restarted: same pid, a new server
    assert start(monkeypatch, 1), "a first start again, not a restart"
    assert not readiness(monkeypatch, 1)(), "not ready on the last run's markers"
