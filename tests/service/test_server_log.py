"""The log settings on their own: what each change may be, what a worker writes under them, and two
controls sharing one file as two workers of a server do (the real two-worker server is in
``tests/service/protocols/v2/test_logging_e2e.py``)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.errors import InvalidInput
from service.server_log import FILE_NAME, LogControl, LogSettings, changed

DEFAULTS = LogSettings()


class Collected(logging.Handler):
    """A handler on the root logger, as BentoML's line writer is in a worker."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


@pytest.fixture
def written() -> Iterator[Collected]:
    """What the root logger's handlers write, with our loggers at INFO as the service sets them."""
    handler = Collected()
    root, ours = logging.getLogger(), logging.getLogger("service")
    level = ours.level
    ours.setLevel(logging.INFO)
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    ours.setLevel(level)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"log_info": 1}, "log_info must be true or false, got 1"),
        ({"log_error": "false"}, "log_error must be true or false, got 'false'"),
        ({"log_verbose_level": -1}, "log_verbose_level must be an integer from 0 to 4294967295, got -1"),
        ({"log_verbose_level": 2**32}, "from 0 to 4294967295, got 4294967296"),
        ({"log_verbose_level": True}, "must be an integer from 0 to 4294967295, got True"),
        ({"log_verbose_level": 1.0}, "got 1.0"),
        ({"log_file": "/var/log/x.log"}, "log_file is fixed at '' on this server: the server writes its log"),
        (
            {"log_format": "default"},
            "log_format is fixed at 'ISO8601' on this server: the lines are BentoML's",
        ),
        ({"log_colour": True}, "unknown log setting 'log_colour'; the settings are log_file, log_info"),
    ],
)
def test_a_wrong_change_says_which_setting_and_what_it_takes(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        changed(DEFAULTS, changes, DEFAULTS)


def test_a_change_keeps_the_other_settings_and_none_puts_one_back_to_its_start_value() -> None:
    start = LogSettings(log_verbose_level=2)
    quiet = changed(start, {"log_info": False, "log_verbose_level": 0, "log_file": ""}, start)
    assert quiet == LogSettings(log_info=False, log_verbose_level=0)
    assert changed(quiet, {"log_verbose_level": None}, start) == LogSettings(
        log_info=False, log_verbose_level=2
    )
    assert changed(quiet, {}, start) == quiet


def test_each_severity_has_its_switch_and_debug_lines_need_a_verbose_level(written: Collected) -> None:
    level_before = logging.getLogger("service").level
    control = LogControl(DEFAULTS)
    ours = logging.getLogger("service.anything")
    other = logging.getLogger("some.library")  # BentoML's and uvicorn's lines go through the same handlers
    try:
        ours.debug("d0")
        ours.info("i0")
        control.update({"log_info": False, "log_warning": False})
        ours.info("i1")
        other.warning("w1")
        other.error("e1")
        ours.critical("c1")
        control.update({"log_error": False, "log_verbose_level": 1})
        ours.debug("d2")
        other.error("e2")
        ours.critical("c2")
        control.update({"log_verbose_level": 0, "log_info": True})
        ours.debug("d3")
        ours.info("i3")
    finally:
        control.close()
    changes = [line for line in written.lines if line.startswith("INFO log settings changed: ")]
    assert len(changes) == 1 and "'log_info': True" in changes[0]  # the two before went unwritten: INFO off
    assert [line for line in written.lines if line not in changes] == [
        "INFO i0",
        "ERROR e1",
        "CRITICAL c1",
        "DEBUG d2",
        "INFO i3",
    ]
    assert logging.getLogger("service").level == level_before  # closed: as before


def test_two_workers_sharing_the_file_follow_each_others_changes(tmp_path: Path, written: Collected) -> None:
    shared = tmp_path / FILE_NAME
    one = LogControl(DEFAULTS, shared)
    try:
        assert one.update({"log_verbose_level": 3}).log_verbose_level == 3
        two = LogControl(DEFAULTS, shared)  # a worker (re)started later begins with the server's settings
        assert two.current.log_verbose_level == 3
        assert two.update({"log_warning": False}) == LogSettings(log_warning=False, log_verbose_level=3)
        assert one.current.log_warning is True  # not read yet ...
        assert one.settings() == LogSettings(log_warning=False, log_verbose_level=3)  # ... read at a look
        two.update({"log_warning": None})
        one.sync()
        shared.write_text('{"log_info": "yes"}')  # somebody broke the file: what is in force stays
        one.sync()
        assert one.current == LogSettings(log_verbose_level=3)
        two.close()
    finally:
        one.close()
    assert any("not applied: log_info must be true or false, got 'yes'" in line for line in written.lines)
    assert {p.name for p in tmp_path.iterdir()} == {FILE_NAME, f".{FILE_NAME}.lock"}  # no half-written file
