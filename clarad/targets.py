"""The Triton instances' own metrics endpoints, as a Prometheus file-service-discovery list.

Each running tritonserver serves its ``nv_*`` metrics on a loopback port clarad chose. The list of
those endpoints is rewritten whole (a temporary file renamed over the old one, so Prometheus never
reads half of it) whenever it changes; ``file_sd_configs`` in Prometheus picks the change up.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

log = logging.getLogger("clarad")


@dataclass(frozen=True, order=True)
class Target:
    instance: str  # clarad's instance id
    slot: str  # the GPU slot or "cpu…" it is pinned to
    address: str  # host:port of its metrics endpoint


def render(targets: Iterable[Target]) -> str:
    """The file_sd JSON: one group per instance, labelled with clarad's names for it."""
    groups = [{"targets": [t.address], "labels": {"clarad_instance": t.instance, "clarad_slot": t.slot}}
              for t in sorted(targets)]
    return json.dumps(groups, indent=1) + "\n"


class TargetsFile:
    """Owns one file_sd file; ``publish`` writes it only when the list differs from the last one written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written: Optional[str] = None

    def publish(self, targets: Iterable[Target]) -> None:
        text = render(targets)
        if text == self.written:
            return
        temporary = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A new file of its own (O_EXCL), never one someone placed there beforehand.
            fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(fd, "w") as out:
                out.write(text)
            os.chmod(temporary, 0o644)  # for a Prometheus running as another user
            os.replace(temporary, self.path)
        except OSError as exc:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
            if self.written != "failed":  # one line per failure streak, not one per pass
                log.warning("the Triton metrics targets file %s could not be written: %s", self.path,
                            exc.strerror or exc)
            self.written = "failed"
            return
        self.written = text
