"""clarad.systemd: log lines for the journal (priorities, one line per record) and RELOADING=1."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from clarad.logs import printable as escape
from clarad.systemd import LogFormatter, is_journal, priority, reloading, stderr_line


def record(level: int, message: str, *args: object, exc_info: bool = False) -> logging.LogRecord:
    return logging.getLogger("clarad").makeRecord("clarad", level, __file__, 1, message, args,
                                                  sys.exc_info() if exc_info else None)


@pytest.mark.parametrize(("level", "expected"), [
    (logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3), (logging.CRITICAL, 2),
    (25, 4), (5, 7), (60, 2),
])
def test_levels_map_to_syslog_priorities_custom_levels_to_the_next_more_severe(level: int, expected: int) -> None:
    assert priority(level) == expected


def test_journal_lines_start_with_the_records_priority_and_carry_no_time() -> None:
    journal = LogFormatter(journal=True)
    assert journal.format(record(logging.WARNING, "model %s removed", "affine")) == \
        "<4>WARNING clarad: model affine removed"
    assert journal.format(record(logging.ERROR, "x")).startswith("<3>ERROR")
    assert journal.format(record(logging.INFO, "x")).startswith("<6>INFO")


def test_plain_lines_start_with_the_time_and_carry_no_priority() -> None:
    line = LogFormatter(journal=False).format(record(logging.WARNING, "model %s removed", "affine"))
    assert not line.startswith("<")
    assert line.endswith(" WARNING clarad: model affine removed")
    assert line[:4].isdigit()  # the year of asctime


@pytest.mark.parametrize("journal", [True, False])
def test_a_name_with_a_newline_cannot_forge_a_line_or_its_priority(journal: bool) -> None:
    name = "evil.yaml\n<3>ERROR clarad: job 1 FAULTED\r\x1b[2J\u2028"
    text = LogFormatter(journal=journal).format(record(logging.WARNING, "rejected pipelines/%s: bad", name))
    assert "\n" not in text and "\r" not in text and "\x1b" not in text and "\u2028" not in text
    assert "evil.yaml\\n<3>ERROR clarad: job 1 FAULTED\\r\\x1b[2J\\u2028" in text
    assert text.startswith("<4>") == journal


def test_a_traceback_keeps_its_lines_each_with_the_records_priority() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        text = LogFormatter(journal=True).format(record(logging.ERROR, "a pass failed", exc_info=True))
    lines = text.split("\n")
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)
    assert lines[0] == "<3>ERROR clarad: a pass failed" and lines[-1] == "<3>ValueError: boom"


def test_escape_leaves_printable_text_alone() -> None:
    assert escape("modèle-été 1/2 (x) [y]") == "modèle-été 1/2 (x) [y]"
    assert escape("a\tb\x00c\x7f\x85") == "a\\tb\\x00c\\x7f\\x85"


def test_stderr_is_the_journal_only_when_journal_stream_names_it(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as stream, open(tmp_path / "other", "w") as other:
        own = os.fstat(stream.fileno())
        named = f"{own.st_dev}:{own.st_ino}"
        assert is_journal(stream, named)
        assert not is_journal(other, named)  # the variable inherited, the stream redirected
        assert not is_journal(stream, None)
        assert not is_journal(stream, "")


def test_reloading_sends_reloading_and_the_monotonic_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(address))
        monkeypatch.setenv("NOTIFY_SOCKET", str(address))
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        fields = dict(line.split("=", 1) for line in receiver.recv(4096).decode().split("\n"))
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_reloading_outside_systemd_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not reloading()


def test_a_stderr_line_carries_its_priority_only_into_the_journal(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with open(tmp_path / "journal", "w") as journal:
        own = os.fstat(journal.fileno())
        monkeypatch.setattr(sys, "stderr", journal)
        monkeypatch.setenv("JOURNAL_STREAM", f"{own.st_dev}:{own.st_ino}")
        assert stderr_line("clarad: bad\nname", logging.ERROR) == "<3>clarad: bad\\nname"
        monkeypatch.delenv("JOURNAL_STREAM")
        assert stderr_line("clarad: bad\nname", logging.ERROR) == "clarad: bad\\nname"  # one line everywhere
