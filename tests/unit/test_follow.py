"""`jobs logs --follow`: each line once, partial lines held back until complete or the job stops."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from clarad.follow import Tail, follow


def test_tail_returns_complete_lines_once(tmp_path: Path) -> None:
    log = tmp_path / "op.log"
    tail = Tail(log)
    assert tail.read() == []  # not there yet
    log.write_bytes(b"one\ntw")
    assert tail.read() == ["one"]
    with open(log, "ab") as handle:
        handle.write(b"o\nthree")
    assert tail.read() == ["two"]
    assert tail.read(flush=True) == ["three"]
    assert tail.read(flush=True) == []


def test_follow_prints_what_grows_until_the_job_stops_then_the_rest(tmp_path: Path) -> None:
    logs = {"a": tmp_path / "a.log", "b": tmp_path / "b.log"}
    answers = iter([{"state": "RUNNING"}, {"state": "RUNNING"}, {"state": "STOPPED", "status": "HEALTHY"}])
    steps = iter([lambda: logs["a"].write_text("a1\n"),
                  lambda: (logs["b"].write_text("b1\nb2"), logs["a"].write_text("a1\na2\n"))])
    out = io.StringIO()

    def job() -> dict[str, Any]:
        return next(answers)

    end = follow(job, logs, out, sleep=lambda _seconds: next(steps)())
    assert end["status"] == "HEALTHY"
    assert out.getvalue() == "a | a1\na | a2\nb | b1\nb | b2\n"
