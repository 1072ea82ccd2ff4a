"""`clarad jobs logs --follow`: print a job's operator logs as they grow, until the job stops.

The CLI reads the log files itself (``jobs/<id>/logs/<op>.log``, readable by clarad's group) and
asks the daemon only whether the job has stopped; after it has, one last read prints the rest.
``Tail`` is the pure part: bytes in, complete lines out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

INTERVAL = 0.2  # seconds between looks at the files


class Tail:
    """The complete lines of a growing file, each once; a last partial line only when flushed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self, flush: bool = False) -> list[str]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            data = b""
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if flush and self.partial:
            lines.append(self.partial)
            self.partial = b""
        return [line.decode(errors="replace") for line in lines]


def follow(job: Callable[[], dict[str, Any]], logs: dict[str, Path], out: TextIO,
           sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Print new lines of every log in ``logs`` (operator name -> file), prefixed by the operator's
    name when there are several, until ``job()`` says the job stopped; return that last answer."""
    tails = {name: Tail(path) for name, path in logs.items()}
    while True:
        state = job()
        stopped = state["state"] == "STOPPED"
        for name, tail in tails.items():
            for line in tail.read(flush=stopped):
                out.write(f"{name} | {line}\n" if len(tails) > 1 else f"{line}\n")
        out.flush()
        if stopped:
            return state
        sleep(INTERVAL)
