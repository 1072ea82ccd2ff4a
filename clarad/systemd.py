"""systemd: sd_notify (READY, RELOADING, STOPPING, WATCHDOG, STATUS) and log lines for the journal.

Both are no-ops outside systemd: without $NOTIFY_SOCKET nothing is sent, and without a journal on
stderr ($JOURNAL_STREAM naming it) log lines carry a time instead of a priority prefix.

Log lines are one line per record whatever they quote: control characters in a message (a file
name with a newline, an escape sequence) are escaped, so nothing a drop is named can forge a line
or its priority. Only a traceback keeps its lines, each with the record's priority.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import IO, Optional

from clarad.logs import OneLineFormatter, printable

# Python's levels as syslog priorities, which journald reads from a "<N>" prefix (SyslogLevelPrefix=).
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def notify(*fields: str) -> bool:
    """Send ``fields`` (e.g. "READY=1", "STATUS=3 jobs running"); True if systemd got them."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
        except OSError:
            return False
    return True


def reloading() -> bool:
    """Say that the settings are being read again; READY=1 says it is done (sd_notify(3))."""
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def watchdog_interval() -> float | None:
    """Half of WatchdogSec when systemd asks this process for keep-alives, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


def is_journal(stream: IO[str], journal_stream: Optional[str]) -> bool:
    """Whether ``stream`` is the journal stream systemd connected (``$JOURNAL_STREAM`` is its
    "device:inode"); a process that inherited the variable but writes elsewhere is not."""
    if not journal_stream:
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return journal_stream == f"{stat.st_dev}:{stat.st_ino}"


class LogFormatter(OneLineFormatter):
    """One escaped line per record (``logs.printable``); with ``journal``, each line starts with the
    record's "<N>" priority and has no time (journald adds its own), else it starts with the time."""

    def __init__(self, journal: bool) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s" if journal
                         else "%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))


def priority(levelno: int) -> int:
    """The syslog priority of a Python log level (a custom level takes the next more severe one)."""
    return next((PRIORITIES[level] for level in sorted(PRIORITIES) if levelno <= level), 2)


def stderr_is_journal() -> bool:
    return is_journal(sys.stderr, os.environ.get("JOURNAL_STREAM"))


def stderr_line(text: str, level: int) -> str:
    """``text`` as one line for stderr, with the priority of ``level`` when stderr is the journal."""
    return f"<{priority(level)}>{printable(text)}" if stderr_is_journal() else printable(text)


def log_formatter() -> LogFormatter:
    """The formatter for clarad's stderr: prefixed for the journal when stderr is it."""
    return LogFormatter(journal=stderr_is_journal())
