"""What a previous clarad left running, found at start-up: the children it recorded (checked against
pid reuse), and those it started but died before recording, by the mark every child carries in its
environment (``MARK``: the state directory of the clarad that started it)."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import psutil

log = logging.getLogger(__name__)

MARK = "CLARAD_CHILD_OF"
NO_CAP_KILL = ("the kernel refused the signal (EPERM): clarad lacks CAP_KILL, which signalling operator_user's "
               "processes needs")


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the kernel refuses (EPERM)."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # gone already
    except PermissionError:
        return False
    return True


def stop_marked(marker: str) -> list[str]:
    """Kill the process groups of processes whose environment carries ``MARK=marker`` (the children
    of this state directory's clarad); describe each. Only readable environments are seen: clarad's
    own user's (an operator_user's are reached by its operator's cgroup)."""
    stopped = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if proc.pid == os.getpid() or proc.environ().get(MARK) != marker:
                continue
            os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
        except (psutil.Error, OSError):
            continue
        stopped.append(f"{proc.info['name']} (pid {proc.pid})")
    return stopped


def stop_leftovers(recorded: list[dict[str, Any]], grace: float = 5.0) -> list[str]:
    """Stop the process groups of recorded children that outlived a previous clarad; describe each."""
    stopped = []
    for row in recorded:
        try:
            proc = psutil.Process(row["pid"])
            if abs(proc.create_time() - row["create_time"]) > 1.0:
                continue  # the pid was reused by an unrelated process
        except psutil.Error:
            continue
        if not signal_group(row["pid"], signal.SIGTERM):
            log.error("%s %s (pid %d), left running by a previous clarad, keeps running: %s",
                      row["kind"], row["label"], row["pid"], NO_CAP_KILL)
            continue
        psutil.wait_procs([proc], timeout=grace)
        signal_group(row["pid"], signal.SIGKILL)
        stopped.append(f"{row['kind']} {row['label']} (pid {row['pid']})")
    return stopped
