"""Named crash points, for fault-injection runs (bench/faults.py): with ``CLARAD_CRASH_POINT`` set to
one of ``POINTS`` in its environment, clarad kills itself with SIGKILL the first time it gets there,
as a power cut or the OOM killer would, so that the next start's recovery is tried exactly there.
Unset (always, outside those runs), a crash point is one comparison.
"""

from __future__ import annotations

import os
import signal

POINTS = {
    "payload-moved": "a payload moved into its job's directory, its job not yet recorded",
    "drop-accepted": "a job recorded, not yet queued",
    "child-started": "a child process started, not yet recorded",
    "model-swap": "a model's new revision renamed into models/, not yet recorded",
    "revision-prune": "replaced revisions forgotten in the database, their files not yet deleted",
}
_ARMED = os.environ.get("CLARAD_CRASH_POINT")


def crash_point(name: str) -> None:
    """Die here, now, if this run was started to."""
    assert name in POINTS, name
    if _ARMED == name:
        os.kill(os.getpid(), signal.SIGKILL)
