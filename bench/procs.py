"""Server processes: start one in its own session, wait until it answers, stop it (and all it spawned)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """(status, body) of a GET (or a POST when ``body`` is given); (0, error text) when nothing answered."""
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError) as e:
        return 0, str(e).encode()


def answered(url: str, body: bytes, headers: dict[str, str], loading_s: float = 60.0) -> tuple[int, bytes]:
    """(status, body) of a POST, a 503 retried for ``loading_s``: readiness is per worker, so ``/readyz``
    can be answered by a worker that is ready while the request meets another still loading its models."""
    deadline = time.monotonic() + loading_s
    while True:
        status, answer = http(url, body, headers, timeout=30.0)
        if status != 503 or time.monotonic() > deadline:
            return status, answer
        time.sleep(0.2)


class ServerProcess:
    """A server started as ``cmd`` in a new session; its log goes to ``log_path``."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.cmd, self.env, self.cwd, self.log_path = cmd, env, cwd, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_ready(self, url: str, timeout_s: float) -> None:
        """Poll ``url`` until it answers 200; raise with the log's tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with code {self.proc.returncode}: {self.log_tail()}")
            if http(url, timeout=1.0)[0] == 200:
                return
            time.sleep(0.25)
        raise TimeoutError(f"not ready at {url} after {timeout_s:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def tree(self) -> list[psutil.Process]:
        """The server's root process and every live descendant."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the whole session (and stray descendants), then SIGKILL whatever is left."""
        if self.proc is None:
            return
        procs = self.tree()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    p.send_signal(sig)
            _, alive = psutil.wait_procs(procs, timeout=grace_s if sig == signal.SIGTERM else 5)
            if not alive:
                break
            procs = alive
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def foreign_busy_processes() -> list[str]:
    """Training or test runs of other people on this machine (not this process's ancestors)."""
    mine = {p.pid for p in psutil.Process().parents()} | {os.getpid()}
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["pid"] in mine:
            continue
        if "-m training" in cmd or "bin/pytest" in cmd or "-m pytest" in cmd:
            found.append(f"{p.info['pid']}: {cmd[:100]}")
    return found


def wait_quiet(max_load: float, timeout_s: float, log: object = print) -> dict[str, object]:
    """Wait until the 1-min load average is below ``max_load`` and nobody else trains or tests."""
    t0 = time.monotonic()
    while True:
        load1 = os.getloadavg()[0]
        busy = foreign_busy_processes()
        waited = time.monotonic() - t0
        if (load1 < max_load and not busy) or waited > timeout_s:
            return {"load1": round(load1, 2), "waited_s": round(waited), "quiet": load1 < max_load and not busy,
                    "foreign": busy}  # fmt: skip
        if int(waited) % 60 < 5:
            log(f"waiting for a quiet machine: load {load1:.2f}, others: {len(busy)}")  # type: ignore[operator]
        time.sleep(5)
