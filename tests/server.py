"""Start a real ``bentoml serve`` process on a free loopback port for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A BentoML server over ``repo``; use as a context manager. Logs go to ``log_path``."""

    def __init__(
        self,
        repo: Path,
        log_path: Path,
        workers: int = 1,
        start_timeout: float = 90.0,
        ca: Path | None = None,
        token: str | None = None,
        **env: str,
    ) -> None:
        """``ca``: the CA of a TLS server (``https`` URL, verified); ``token``: the bearer token this helper
        sends on its own /readyz and /metrics calls (for servers with protected health or metrics)."""
        self.repo = repo
        self.port = free_port()
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{self.port}"
        self.verify: str | bool = str(ca) if ca else True
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.tf_grpc = f"127.0.0.1:{free_port()}"
        self.v2_grpc = f"127.0.0.1:{free_port()}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "SERVING_REPOSITORY": str(repo),
            "SERVING_PORT": str(self.port),
            "SERVING_WORKERS": str(workers),
            "SERVING_POLL_INTERVAL_S": "0.5",
            "SERVING_GRPC_TFSERVING_PORT": self.tf_grpc.rsplit(":", 1)[1],
            "SERVING_GRPC_V2_PORT": self.v2_grpc.rsplit(":", 1)[1],
            "BENTOML_HOME": str(log_path.parent / "bentoml-home"),
            **env,
        }
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_timeout = start_timeout

    def start(self, timeout: float | None = None, wait_ready: bool = True) -> Server:
        """Start the server and wait for ``/readyz`` (or ``/livez``); stops it again if that fails."""
        try:
            return self._start(timeout or self.start_timeout, wait_ready)
        except BaseException:
            self.stop()
            raise

    def command(self) -> list[str]:
        """The ``bentoml serve`` command line for this server's port."""
        bentoml = Path(sys.executable).with_name("bentoml")
        return [
            str(bentoml),
            "serve",
            "service.service:ModelServer",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def _start(self, timeout: float, wait_ready: bool) -> Server:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        path = "/readyz" if wait_ready else "/livez"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                answer = requests.get(self.url + path, timeout=1, verify=self.verify, headers=self.headers)
                if answer.status_code == 200 and (
                    not wait_ready or self.metric("serving_worker_ready") >= self.workers
                ):  # /readyz is one worker's answer: wait until every worker has loaded the repository
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not {path} after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def wait_for(self, what: str, check: Callable[[], object], timeout_s: float = 10.0) -> None:
        """Poll ``check`` until it is true, for at most ``timeout_s`` seconds (the server's log on failure)."""
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return
            time.sleep(0.1)
        raise AssertionError(f"not true after {timeout_s}s: {what} (last: {last!r})\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:  # the workers, which may not be in the server's process group
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            tree = []
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        _, alive = psutil.wait_procs(tree, timeout=5)
        for child in alive:  # a worker that did not stop with its server (hung) must not outlive the test
            with contextlib.suppress(psutil.Error):
                child.kill()
        self._log.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (from /metrics)."""
        return metric_sum(self.url, name, verify=self.verify, headers=self.headers, **labels)


def metric_sum(
    url: str, name: str, *, verify: bool | str = True, headers: dict[str, str] | None = None, **labels: str
) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` on the server at ``url``'s /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url + "/metrics", timeout=5, verify=verify, headers=headers).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
