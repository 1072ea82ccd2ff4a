"""How clarad starts, records, stops and describes every child process (Triton and operators).

Each child leads its own process group (``start_new_session``), so stopping it reaches whatever it
started too (Triton's Python-backend stubs, an operator's helpers). Each is recorded in the store
before clarad awaits anything else, so after a crash the next start can find and stop leftovers.
Stopping is TERM to the group, a grace period, KILL to the group, reap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Optional, Union

import psutil

log = logging.getLogger(__name__)

Recorder = Callable[[int, float, str, str], None]


@dataclass
class Child:
    proc: asyncio.subprocess.Process
    kind: str  # "triton" or "operator"
    label: str

    @property
    def pid(self) -> int:
        return self.proc.pid


async def spawn(
    argv: Sequence[str],
    *,
    kind: str,
    label: str,
    record: Recorder,
    env: Mapping[str, str],
    cwd: Optional[Path] = None,
    stdout: Optional[IO[Any]] = None,
    stderr: Union[IO[Any], int, None] = None,
    user: Optional[str] = None,
) -> Child:
    """Start ``argv`` in a new session; raises OSError when it cannot be executed."""
    identity: dict[str, Any] = {}
    if user is not None:  # that user's own group only, not clarad's (which opens its state)
        identity = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        **identity,
    )
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        created = time.time()
    record(proc.pid, created, kind, label)
    return Child(proc, kind, label)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def stop(child: Child, grace: float) -> int:
    """TERM the child's group, KILL it after ``grace`` seconds, reap; return the exit status."""
    if child.proc.returncode is None:
        _signal_group(child.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(child.proc.wait(), grace)
        except asyncio.TimeoutError:
            if grace > 0:
                log.warning("%s %s did not stop within %.0f s: killing it", child.kind, child.label, grace)
    _signal_group(child.pid, signal.SIGKILL)  # whatever is left of the group, leader or not
    return await child.proc.wait()


async def wait_through_cancel(task: "asyncio.Future[Any]") -> None:
    """Wait until ``task`` is done, even if the caller is cancelled meanwhile: cleanup (stopping a
    process group, stopping a job's operators) must finish, or children would outlive it."""
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            continue


async def stop_surely(child: Child, grace: float) -> int:
    """``stop``, not interruptible by a further cancellation of the caller."""
    task = asyncio.ensure_future(stop(child, grace))
    await wait_through_cancel(task)
    return task.result()


def resident_mb(pid: int) -> int:
    """Resident memory of a process and all its descendants, in MB (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total // (1024 * 1024)


def stop_group_remains(child: Child) -> None:
    """After the leader exited: KILL anything it left running in its group."""
    _signal_group(child.pid, signal.SIGKILL)


def describe_exit(returncode: int) -> str:
    """One sentence for an exit status, as a person reading `clarad jobs show` wants it."""
    if returncode == 0:
        return "exited with code 0"
    if returncode > 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    hint = " (perhaps out of memory)" if -returncode == signal.SIGKILL else ""
    return f"killed by {name}{hint}"


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
        _signal_group(row["pid"], signal.SIGTERM)
        psutil.wait_procs([proc], timeout=grace)
        _signal_group(row["pid"], signal.SIGKILL)
        stopped.append(f"{row['kind']} {row['label']} (pid {row['pid']})")
    return stopped
