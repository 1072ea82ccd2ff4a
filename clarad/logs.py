"""clarad's log lines and what it prints: one event per line, whatever names people drop.

Names come from outside (a drop called ``x\\nINFO clarad: job ... HEALTHY``, a job named with ANSI
escapes): ``printable`` writes control characters, bidirectional overrides and undecodable bytes as
escapes, so a name can neither forge a line nor drive the terminal. The log formatter applies it to
every message (tracebacks, which clarad writes itself, keep their lines).
"""

from __future__ import annotations

import logging
import re
from typing import Any

# C0 and C1 controls, DEL, bidirectional embeddings/overrides/isolates, lone surrogates (from
# file names that are not UTF-8: they cannot even be written to a UTF-8 stream).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` on one line, with nothing a terminal would act on."""
    return _UNPRINTABLE.sub(_escape, text)


def printable_data(data: Any) -> Any:
    """Every string in a response (dicts, lists) made printable, for the CLI's tables."""
    if isinstance(data, str):
        return printable(data)
    if isinstance(data, dict):
        return {printable_data(key): printable_data(value) for key, value in data.items()}
    if isinstance(data, list):
        return [printable_data(item) for item in data]
    return data


class OneLineFormatter(logging.Formatter):
    """A formatter whose messages stay on one line (see ``printable``)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = printable(record.message)
        return super().formatMessage(record)
