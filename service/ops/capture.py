"""Payload capture: a sampled share of each model's answers, written to rotating JSONL files.

A model captures when its ``serving.yaml`` entry says so (``capture: {percent: 1}``) or, for models
without one, when ``SERVING_CAPTURE_PERCENT`` is above 0. On the request path :meth:`Capture.observe`
costs a dict look-up and one random draw; a sampled answer's :class:`~service.ops.Served` record (the
arrays by reference, nothing copied) goes into a bounded queue (``SERVING_CAPTURE_QUEUE``). When the
queue is full the record is dropped and counted (``serving_capture_dropped_total{reason="queue_full"}``).

One writer thread per worker process serializes the records (orjson; arrays as nested lists) and
appends them, one JSON object per line, to that worker's own file, so lines never interleave:
``<SERVING_CAPTURE_DIR>/capture-<host>-<pid>-<UTC start>-<n>.jsonl.part`` while open, renamed to
``.jsonl`` when closed. A file is closed before it would grow over ``SERVING_CAPTURE_MAX_FILE_BYTES``,
once it is ``SERVING_CAPTURE_MAX_FILE_AGE_S`` old, and at shutdown. After each close the directory's
closed files (every worker's) are kept under ``SERVING_CAPTURE_MAX_TOTAL_BYTES`` in total, oldest deleted
first; the ``.part`` file of a worker that died is renamed to ``.jsonl`` by the next writer on that host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import re
import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from service.metrics import get_metrics

if TYPE_CHECKING:
    from service.models.config import RepositoryConfig
    from service.models.registry import ModelRegistry
    from service.ops import Served
    from service.settings import Settings

log = logging.getLogger("service.ops.capture")
OPEN_SUFFIX = ".jsonl.part"
CLOSED_SUFFIX = ".jsonl"
TICK_S = 1.0
"""How often an idle writer checks its file's age."""
BATCH = 256
"""Most records written per flush."""
GATHER_S = 0.2
"""After the first record of a batch, how long the writer lets more gather before it writes them."""
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
_STOP: Any = object()


def _default(value: Any) -> Any:
    """What orjson does not write natively: non-contiguous arrays, odd dtypes, NumPy scalars."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot capture a {type(value).__name__}")


def iso_time(ts: float) -> str:
    """``ts`` (seconds since the epoch) as ISO 8601 UTC with milliseconds: ``2026-12-02T10:26:30.123Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(ts: float, served: Served) -> bytes:
    """One line of a capture file (newline included)."""
    record = {
        "time": iso_time(ts),
        "request_id": served.request_id,
        "model": served.model,
        "version": served.version,
        "protocol": served.protocol,
        "variant": served.variant,
        "latency_ms": round(served.seconds * 1000, 3),
        "inputs": served.inputs,
        "outputs": served.outputs,
    }
    return orjson.dumps(record, option=_OPTIONS, default=_default)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RotatingFiles:
    """The capture files of one process: rotated by size and age, the directory pruned by total size."""

    def __init__(self, directory: Path, max_bytes: int, max_age_s: float, max_total_bytes: int) -> None:
        self.directory = directory
        self.max_bytes, self.max_age_s, self.max_total_bytes = max_bytes, max_age_s, max_total_bytes
        self.host = _host()
        self.prefix = f"capture-{self.host}-{os.getpid()}-"
        self.path: Path | None = None
        """The open file (``.jsonl.part``), if any."""
        self._file: Any = None
        self._size = 0
        self._opened = 0.0
        self._count = 0
        self._recovered = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RotatingFiles:
        return cls(settings.capture_dir, settings.capture_max_file_bytes, settings.capture_max_file_age_s,
                   settings.capture_max_total_bytes)  # fmt: skip

    def write(self, lines: list[bytes], now: float) -> None:
        """Append ``lines``; a file is closed first if a line would take it over the size limit (a line
        larger than the limit gets a file of its own) or it is too old. Flushed before returning."""
        for line in lines:
            if self._file is not None and (
                (self._size and self._size + len(line) > self.max_bytes)
                or now - self._opened >= self.max_age_s
            ):
                self.close()
            if self._file is None:
                self._open(now)
            self._file.write(line)
            self._size += len(line)
        if self._file is not None:
            self._file.flush()

    def tick(self, now: float) -> None:
        """Close the open file once it is too old (an idle writer starts no new file until it writes)."""
        if self._file is not None and now - self._opened >= self.max_age_s:
            self.close()

    def close(self) -> None:
        """Close the open file (renamed to ``.jsonl``), then prune the directory."""
        file, path = self._file, self.path
        if file is None or path is None:
            return
        self._file, self.path = None, None
        try:
            file.close()
        finally:
            path.rename(path.with_name(path.name.removesuffix(OPEN_SUFFIX) + CLOSED_SUFFIX))
        self.prune()

    def abandon(self) -> None:
        """Forget the open file after a write failed (the next write starts a new one)."""
        file, self._file, self.path = self._file, None, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def _open(self, now: float) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._recovered:
            self._recovered = True
            self.recover()
        self._count += 1
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        self.path = self.directory / f"{self.prefix}{stamp}-{self._count:06d}{OPEN_SUFFIX}"
        self._file = self.path.open("ab")
        self._size, self._opened = 0, now

    def recover(self) -> None:
        """Rename the ``.part`` files left by dead processes of this host to ``.jsonl``."""
        pattern = re.compile(rf"^capture-{re.escape(self.host)}-(\d+)-.*{re.escape(OPEN_SUFFIX)}$")
        for path in self.directory.glob(f"capture-{self.host}-*{OPEN_SUFFIX}"):
            found = pattern.match(path.name)
            if found and int(found.group(1)) != os.getpid() and not _alive(int(found.group(1))):
                with contextlib.suppress(FileNotFoundError):  # another worker recovered it first
                    path.rename(path.with_name(path.name.removesuffix(OPEN_SUFFIX) + CLOSED_SUFFIX))

    def prune(self) -> None:
        """Delete the oldest closed files until those left total at most ``max_total_bytes``."""
        files = []
        for path in self.directory.glob(f"capture-*{CLOSED_SUFFIX}"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            files.append((stat.st_mtime, path.name, stat.st_size, path))
        files.sort()
        total = sum(size for _, _, size, _ in files)
        for _, _, size, path in files:
            if total <= self.max_total_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size


class CaptureWriter:
    """The bounded queue and the thread that writes what it holds to :class:`RotatingFiles`."""

    def __init__(self, files: RotatingFiles, queue_size: int, start: bool = True) -> None:
        self.files = files
        self.queue: queue.Queue[Any] = queue.Queue(queue_size)
        self.thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._failures = 0
        get_metrics()  # created here, not first from two threads at once
        if start:
            self.thread.start()

    def offer(self, ts: float, served: Served) -> None:
        """Queue one record, or drop and count it when the writer is behind."""
        try:
            self.queue.put_nowait((ts, served))
        except queue.Full:
            get_metrics().capture_dropped.labels(served.model, "queue_full").inc()

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, close the file and stop the thread."""
        if not self.thread.is_alive():
            self.files.close()
            return
        try:
            self.queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            log.error("capture writer did not drain its queue within %.0f s; closing anyway", timeout_s)
        self.thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            try:
                batch = [self.queue.get(timeout=TICK_S)]
            except queue.Empty:
                self._guard(self.files.tick)
                continue
            # let records gather instead of waking (and taking the GIL from the event loop) for each one
            time.sleep(GATHER_S)
            while len(batch) < BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            self._write([item for item in batch if item is not _STOP])
            if stop:
                self._guard(lambda _now: self.files.close())
                return

    def _write(self, batch: list[tuple[float, Served]]) -> None:
        metrics = get_metrics()
        lines, models = [], []
        for ts, served in batch:
            try:
                lines.append(encode(ts, served))
                models.append(served.model)
            except (TypeError, orjson.JSONEncodeError) as exc:
                log.warning("cannot capture an answer of %s: %s", served.model, exc)
                metrics.capture_dropped.labels(served.model, "encode_error").inc()
        if not lines:
            return
        try:
            self.files.write(lines, time.time())
        except OSError as exc:
            self.files.abandon()
            self._failures += 1
            if self._failures in (1, 10, 100) or self._failures % 1000 == 0:
                log.error("capture: cannot write under %s (failure %d): %s", self.files.directory,
                          self._failures, exc)  # fmt: skip
            for model, n in Counter(models).items():
                metrics.capture_dropped.labels(model, "write_error").inc(n)
            return
        for model, n in Counter(models).items():
            metrics.capture_written.labels(model).inc(n)

    def _guard(self, step: Any) -> None:
        try:
            step(time.time())
        except OSError as exc:
            log.error("capture: closing a file under %s failed: %s", self.files.directory, exc)


class Capture:
    """The capture feature: per model sample rates from ``serving.yaml`` over the settings."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.rates: dict[str, float] = {}
        """Model -> share of its answers captured (0-1], for the models that capture."""
        self.writer: CaptureWriter | None = None

    def configure(self, config: RepositoryConfig) -> bool:
        settings = self.registry.settings
        rates = {}
        for name in self.registry.models:
            percent = config.policy(name).effective(settings).capture_percent
            if percent > 0:
                rates[name] = percent / 100
        if rates and self.writer is None:
            self.writer = CaptureWriter(RotatingFiles.from_settings(settings), settings.capture_queue)
        self.rates = rates
        return bool(rates)

    def observe(self, served: Served) -> None:
        rate = self.rates.get(served.model)
        writer = self.writer
        if rate is not None and writer is not None and random.random() < rate:
            writer.offer(time.time(), served)

    def close(self) -> None:
        """Write what is queued and close the files (at shutdown)."""
        writer, self.writer, self.rates = self.writer, None, {}
        if writer is not None:
            writer.close()
