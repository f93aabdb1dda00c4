"""The server's log: Triton's log settings, changed at run time for every worker, and the request log.

Triton's logging extension (``GET``/``POST /v2/logging``, gRPC ``LogSettings``, tritonclient's
``get_log_settings`` / ``update_log_settings``) reads and changes :class:`LogSettings`:

- ``log_info``, ``log_warning``, ``log_error``: whether lines of that severity are written (every line of
  the worker: ours, BentoML's and uvicorn's; a record's level picks its switch, ``CRITICAL`` is an error);
- ``log_verbose_level``: 0 is off; 1 and more write our debug lines, among them one line per request
  answered by our REST routes and gRPC methods (:func:`log_request`); its start value is the
  ``log_verbose_level`` setting (``SERVING_LOG_VERBOSE_LEVEL``);
- ``log_format`` and ``log_file`` are reported but fixed: the lines are BentoML's, whose timestamps are
  ISO 8601 already (``"ISO8601"``), and they go to standard output (``""``); any other value is refused.

A change reaches every worker of the server: :class:`LogControl` writes the settings to a file that all
workers of one ``bentoml serve`` share (:func:`service.bento.workers.server_folder`) and each worker
reads it again once it has changed (:meth:`LogControl.sync`: at every read of the settings and from a
timer, :meth:`LogControl.follow`), so a worker restarted after a crash starts with them too. Outside
BentoML's workers the settings are this process's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.errors import InvalidInput
from service.settings import get_settings

if TYPE_CHECKING:
    from service.context import Call

log = logging.getLogger("service")
REQUESTS = logging.getLogger("service.requests")
"""The request log: one debug line per answered request while ``log_verbose_level`` is 1 or more."""
FILE_NAME = "log-settings.json"
HANDLERS_OF = (None, "bentoml")
"""The loggers whose handlers write every line of a BentoML worker (the root's and BentoML's own)."""
UINT32_MAX = 2**32 - 1
FIXED = {"log_file": "", "log_format": "ISO8601"}
"""Settings reported but not changeable here, and why (the message of a refused change)."""
WHY_FIXED = {
    "log_file": "the server writes its log to standard output; redirect that, or read the container's log",
    "log_format": "the lines are BentoML's, whose timestamps are ISO 8601 already",
}


@dataclass(frozen=True)
class LogSettings:
    """Triton's log settings, with its names."""

    log_file: str = FIXED["log_file"]
    log_info: bool = True
    log_warning: bool = True
    log_error: bool = True
    log_verbose_level: int = 0
    log_format: str = FIXED["log_format"]

    def document(self) -> dict[str, Any]:
        """The settings as Triton answers them (REST body; gRPC ``settings`` map)."""
        return asdict(self)

    def writes(self, level: int) -> bool:
        """Whether a record of ``level`` is written under these settings."""
        if level >= logging.ERROR:
            return self.log_error
        if level >= logging.WARNING:
            return self.log_warning
        if level >= logging.INFO:
            return self.log_info
        return self.log_verbose_level > 0


NAMES = tuple(f.name for f in fields(LogSettings))


def changed(current: LogSettings, changes: Mapping[str, Any], defaults: LogSettings) -> LogSettings:
    """``current`` with ``changes`` (Triton's names; ``None`` puts a setting back to its start value),
    or :class:`InvalidInput` saying which setting is wrong and what it takes."""
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in NAMES:
            raise InvalidInput(f"unknown log setting {name!r}; the settings are {', '.join(NAMES)}")
        values[name] = getattr(defaults, name) if value is None else _checked(name, value)
    return replace(current, **values)


def _checked(name: str, value: Any) -> Any:
    if name in FIXED:
        if value != FIXED[name]:
            raise InvalidInput(
                f"{name} is fixed at {FIXED[name]!r} on this server: {WHY_FIXED[name]}; got {value!r}"
            )
        return value
    if name == "log_verbose_level":
        if type(value) is not int or not 0 <= value <= UINT32_MAX:
            raise InvalidInput(f"log_verbose_level must be an integer from 0 to {UINT32_MAX}, got {value!r}")
        return value
    if type(value) is not bool:
        raise InvalidInput(f"{name} must be true or false, got {value!r}")
    return value


class _Gate(logging.Filter):
    """On the worker's log handlers: drops the records the current settings do not write."""

    def __init__(self, control: LogControl) -> None:
        super().__init__()
        self.control = control

    def filter(self, record: logging.LogRecord) -> bool:
        return self.control.current.writes(record.levelno)


class LogControl:
    """This worker's log settings, kept equal to the file the server's workers share (``shared``;
    ``None``: this process only)."""

    def __init__(
        self, defaults: LogSettings, shared: Path | None = None, base_level: int | None = None
    ) -> None:
        self.defaults = defaults
        self.shared = shared
        self.current = defaults
        self._base_level = log.level if base_level is None else base_level
        """The level of our loggers while verbose lines are off (the one they had before)."""
        self._gate = _Gate(self)
        self._seen: tuple[int, int] | None = None  # (inode, mtime) of the file last read
        self._mutex = threading.RLock()  # a change (on a thread) and a look (on the loop) one at a time
        self._apply(defaults)
        self.sync()

    def settings(self) -> LogSettings:
        """The server's settings now (the shared file read first, when it has changed)."""
        self.sync()
        return self.current

    def update(self, changes: Mapping[str, Any]) -> LogSettings:
        """Change the settings of every worker; returns them. Changes of two workers at once are
        applied one after the other (the file is locked while one is read, changed and written)."""
        with self._mutex, self._locked():
            self.sync()
            old = self.current
            new = changed(old, changes, self.defaults)
            if self.shared is not None:
                part = self.shared.with_name(f".{self.shared.name}.{os.getpid()}")
                part.write_text(json.dumps(new.document()))
                part.replace(self.shared)  # whole or not at all for a worker reading it
                self._seen = self._stamp()
            self._apply(new)
        if new != old:
            log.info("log settings changed: %s", new.document())
        return new

    def sync(self) -> None:
        """Take the shared file's settings if it changed since it was last read (and put the gate back
        on the log handlers if they were replaced). A file that cannot be read keeps what is in force."""
        self._install()
        if self.shared is None:
            return
        with self._mutex:
            stamp = self._stamp()
            if stamp is None or stamp == self._seen:
                return
            self._seen = stamp
            try:
                document = json.loads(self.shared.read_text())
                new = changed(self.defaults, document, self.defaults)
            except (OSError, ValueError, InvalidInput) as exc:
                log.warning("log settings in %s not applied: %s", self.shared, exc)
                return
            self._apply(new)

    async def follow(self, interval_s: float = 0.5) -> None:
        """Keep this worker's settings equal to the shared file (runs until cancelled)."""
        while True:
            await asyncio.sleep(interval_s)
            self.sync()

    def close(self) -> None:
        """Take the gate off the log handlers and our loggers back to their level."""
        for handler in _handlers():
            handler.removeFilter(self._gate)
        log.setLevel(self._base_level)

    def _apply(self, new: LogSettings) -> None:
        self.current = new
        log.setLevel(logging.DEBUG if new.log_verbose_level > 0 else self._base_level)

    def _install(self) -> None:
        """The gate on every handler of the root and ``bentoml`` loggers (where every line is written)."""
        for handler in _handlers():
            if self._gate not in handler.filters:
                handler.addFilter(self._gate)

    def _stamp(self) -> tuple[int, int] | None:
        assert self.shared is not None
        try:
            stat = self.shared.stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self.shared is None:
            yield
            return
        self.shared.parent.mkdir(parents=True, exist_ok=True)
        with open(self.shared.with_name(f".{self.shared.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _handlers() -> list[logging.Handler]:
    return [handler for name in HANDLERS_OF for handler in logging.getLogger(name).handlers]


_control: LogControl | None = None


def configure(verbose_level: int, shared_folder: Path | None) -> LogControl:
    """This process's :class:`LogControl`: starting at ``verbose_level``, shared through a file in
    ``shared_folder`` (``None``: not shared)."""
    global _control
    base_level = None
    if _control is not None:  # configured again (tests): the old one lets go first
        base_level = _control._base_level
        _control.close()
    shared = None if shared_folder is None else shared_folder / FILE_NAME
    _control = LogControl(LogSettings(log_verbose_level=verbose_level), shared, base_level)
    return _control


def get_log_control() -> LogControl:
    """The process's :class:`LogControl` (:func:`configure`; unshared with the settings' start value
    when nothing configured it)."""
    if _control is None:
        return configure(get_settings().log_verbose_level, None)
    return _control


def log_request(
    transport: str, what: str, status: str, seconds: float, call: Call | None, error: str | None = None
) -> None:
    """One line of the request log, ``HTTP POST /v1/predict 200 0.61 ms request_id=... model=cnn
    version=1``, with the error's message after a colon (the call's, else ``error``). Call it only while
    ``REQUESTS`` writes debug lines."""
    line = f"{transport} {what} {status} {seconds * 1000:.2f} ms"
    if call is not None:
        line += f" request_id={call.request_id}"
        if call.model is not None:
            line += f" model={call.model} version={call.version}"
        error = call.error or error
    REQUESTS.debug(line if error is None else f"{line}: {error}")
