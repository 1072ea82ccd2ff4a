"""Names from outside cannot forge a log line or drive a terminal (clarad/logs.py, the CLI's tables)."""

from __future__ import annotations

import io
import logging

import pytest

from clarad import cli
from clarad.logs import OneLineFormatter, printable, printable_data

FORGED = "scan\n2026-01-01 00:00:00,000 INFO clarad: job 0000 stopped HEALTHY"


@pytest.mark.parametrize("raw, shown", [
    ("plain name-1_2.dcm", "plain name-1_2.dcm"),
    ("a\nb\rc\td", "a\\nb\\rc\\td"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("\x9b31m", "\\x9b31m"),  # the one-byte CSI
    ("abc\u202edcba", "abc\\u202edcba"),  # right-to-left override
    ("caf\udce9", "caf\\udce9"),  # a name that is not UTF-8, as os.fsdecode gives it
    ("é ü 漢字", "é ü 漢字"),
])
def test_printable_escapes_what_a_terminal_would_act_on(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_a_log_message_stays_one_line_whatever_the_names_in_it() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("clarad.test-logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("rejected jobs/%s: %s", FORGED, "a reason")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().count("\n") == 1
    assert stream.getvalue() == ("WARNING clarad.test-logs: rejected jobs/scan\\n2026-01-01 00:00:00,000 INFO clarad: "
                                 "job 0000 stopped HEALTHY: a reason\n")


def test_a_traceback_keeps_its_lines() -> None:
    formatter = OneLineFormatter("%(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("clarad", logging.ERROR, __file__, 1, "job %s failed", ("a\nb",),
                                   exc_info=__import__("sys").exc_info())
    text = formatter.format(record)
    assert text.startswith("job a\\nb failed\nTraceback (most recent call last):\n")


def test_jobs_list_prints_no_escape_sequence_from_a_job_name(capsys: pytest.CaptureFixture[str]) -> None:
    jobs = [{"id": "0" * 32, "pipeline": "p", "name": "\x1b[2J\x1b[31mscan\nforged", "state": "PENDING",
             "status": None, "created_at": 0}]
    ns = cli.build_parser().parse_args(["jobs", "list"])
    cli._show(ns, jobs, cli.format_jobs)
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.count("\n") == 2
    assert "\\x1b[2J\\x1b[31mscan\\nforged" in out


def test_printable_data_reaches_every_string_and_leaves_other_values() -> None:
    assert printable_data({"a\n": ["x\x07", 1, None, {"k": "\x1b"}]}) == {"a\\n": ["x\\x07", 1, None, {"k": "\\x1b"}]}
