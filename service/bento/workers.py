"""The workers of one ``bentoml serve``: a first start or a restart, and readiness for the whole server.

Each worker leaves markers in a folder of the temporary directory named after its parent (the
``bentoml serve`` process, by pid and start time): ``worker-<id>`` when it starts, ``ready-<id>`` once it
has loaded the repository for the first time (:func:`server_folder`; the log settings that every
worker follows are kept there too, :mod:`service.server_log`).

- :func:`first_start` tells a worker whether it is a restart after a crash: a restarted worker loads its
  models before it listens, so new connections keep going to the workers that are ready while it loads.
- :class:`ServerReadiness` makes ``/readyz`` (and the V2 server-ready answers) the server's readiness
  rather than one worker's. At first start every worker listens before it loads (so ``/livez`` answers
  at once), and each listens on a socket of its own: a readiness probe answered by the first worker to
  load would send traffic to the pod while another worker still answers 503. Now a worker says ready
  only once ``workers`` distinct workers have been ready. That only ever grows: a worker restarted
  after a crash does not take the server out of service (it listens only once it has loaded).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import psutil


def _worker_id() -> str | None:
    """This process's ``--worker-id`` under ``bentoml serve`` (``None`` outside BentoML's workers)."""
    if "--worker-id" not in sys.argv:
        return None
    return sys.argv[sys.argv.index("--worker-id") + 1]


def _folder() -> Path:
    """The markers' folder of this ``bentoml serve`` run: its pid and start time (in a container it is
    pid 1 each time, and ``/tmp`` may outlive a container restart, as an ``emptyDir`` does)."""
    parent = os.getppid()
    try:
        started = int(psutil.Process(parent).create_time() * 1000)
    except psutil.Error:
        return Path(tempfile.gettempdir()) / f"keras-serving-{parent}"
    return Path(tempfile.gettempdir()) / f"keras-serving-{parent}-{started}"


def server_folder() -> Path | None:
    """The folder every worker of this ``bentoml serve`` shares (``None`` outside BentoML's workers)."""
    return None if _worker_id() is None else _folder()


def first_start(workers: int) -> bool:
    """``True`` the first time a BentoML worker starts under its ``bentoml serve`` process, ``False`` when
    it is a restart after a crash; ``True`` outside BentoML's workers.

    A restart is a worker whose ``--worker-id`` started before, or any worker that finds ``workers``
    others already started: circus gives a replacement the lowest free id, which is the dead one's only
    once that one is reaped, so under load a replacement can come with a new id."""
    worker = _worker_id()
    if worker is None:
        return True
    folder = _folder()
    marker = folder / f"worker-{worker}"
    if marker.exists():
        return False
    folder.mkdir(parents=True, exist_ok=True)
    started = sum(1 for _ in folder.glob("worker-*"))
    marker.touch()
    return started < workers


class ServerReadiness:
    """Whether every worker of this server has been ready (always ``True`` outside BentoML's workers)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.worker = _worker_id()
        self._all = self.worker is None or workers <= 1

    def mark_ready(self) -> None:
        """This worker has loaded the repository (the first time: later loads change nothing)."""
        if self.worker is not None:
            folder = _folder()
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"ready-{self.worker}").touch()

    def __call__(self) -> bool:
        if not self._all:  # a look at the folder until the answer is yes, which stays
            self._all = sum(1 for _ in _folder().glob("ready-*")) >= self.workers
        return self._all
