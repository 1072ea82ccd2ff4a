"""Every process an operator starts stays inside its operator, even one that leaves its process group
or session (``setsid sleep 77 &``): when the operator ends (or its job is cancelled, times out, or
clarad stops), whatever it left is stopped.

Killing the operator's process group (children.py) reaches only what stayed in the group. Two ways
reach the rest, chosen at start-up (setting ``operator_containment``):

- ``cgroup``: a cgroup v2 directory per operator, under clarad's own cgroup (the unit's, delegated
  to clarad with ``Delegate=yes``). The operator's first process moves itself in before it runs
  anything (``/bin/sh -c 'echo 0 > …/cgroup.procs && exec "$@"'``, then setpriv, then the command),
  so nothing it starts can be outside; a process cannot move itself out (the cgroup files are
  clarad's). At the end, ``cgroup.kill`` kills every process in it at once, and the directory is
  removed. After a crash, the next start kills what is left in every such directory.
- ``descendants``, where no cgroup can be made: clarad is a child subreaper
  (``PR_SET_CHILD_SUBREAPER``), so a process whose parent exits is re-parented to clarad instead of
  init. At an operator's end clarad kills, with all their descendants, the processes it adopted
  that carry that operator's marks in their environment (``NVIDIA_CLARA_JOBID``,
  ``NVIDIA_CLARA_STAGENAME``), and those whose environment it may not read (another user's: an
  operator_user's) that started while the operator ran; then it reaps them. A process that both
  clears its environment and runs as clarad's own user escapes this; after a crash, only those
  whose environment names a job that was running are found. The cgroup way has neither limit.

``auto`` takes the cgroup way when clarad may create cgroups, and says in the log which it took.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import logging
import os
import signal
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Protocol

import psutil

from clarad.errors import ConfigError

log = logging.getLogger("clarad")

END_WAIT = 5.0  # seconds for a killed operator's processes to be gone
POLL = 0.01
JOB_MARK, OPERATOR_MARK = "NVIDIA_CLARA_JOBID", "NVIDIA_CLARA_STAGENAME"
PR_SET_CHILD_SUBREAPER = 36


class Containment(Protocol):
    kind: str

    def prefix(self, label: str) -> list[str]:
        """What goes before an operator's command line to put it inside (may be nothing)."""
        ...

    async def end(self, label: str, started: float, ended: float, leaders: Collection[int]) -> int:
        """Stop every process the operator ``label`` left; return how many there were. ``leaders``:
        the processes clarad started itself and waits for (never touched here)."""
        ...

    def stop_leftovers(self, job_ids: Collection[str]) -> int:
        """At start-up: stop what operators of a previous run left; return how many."""
        ...


class Uncontained:
    """Nothing beyond the process group (tests of other things, where no operator starts others)."""

    kind = "none"

    def prefix(self, label: str) -> list[str]:
        return []

    async def end(self, label: str, started: float, ended: float, leaders: Collection[int]) -> int:
        return 0

    def stop_leftovers(self, job_ids: Collection[str]) -> int:
        return 0


def choose(setting: str, state_dir: Path) -> Containment:
    """The containment ``setting`` asks for (``auto``, ``cgroup``, ``descendants``) on this host."""
    if setting in ("auto", "cgroup"):
        try:
            scopes = CgroupScopes.create(state_dir)
            log.info("operators: one cgroup each, under %s", scopes.base)
            return scopes
        except OSError as exc:
            if setting == "cgroup":
                raise ConfigError(f"operator_containment = cgroup: {exc}") from None
            log.info("operators: no cgroup can be made here (%s); following their descendants instead", exc)
    else:
        log.info("operators: following their descendants (operator_containment = %s)", setting)
    return Descendants.create()


# -- cgroups ----------------------------------------------------------------------------------------


def own_cgroup(proc: Path = Path("/proc")) -> Path:
    """clarad's own cgroup v2 directory; OSError when there is none (no cgroup v2 mounted)."""
    relative = next((line[3:] for line in (proc / "self" / "cgroup").read_text().splitlines()
                     if line.startswith("0::")), None)
    mounts = [line.split(" - ")[0].split()[4] for line in (proc / "self" / "mountinfo").read_text().splitlines()
              if " - cgroup2 " in line]
    if relative is None or not mounts:
        raise OSError("no cgroup v2 hierarchy is mounted")
    return Path(mounts[0]) / relative.lstrip("/")


def scope_prefix(state_dir: Path) -> str:
    """The names of the operator cgroups of the clarad of ``state_dir`` start with this."""
    return f"clarad-{hashlib.sha256(os.fsencode(os.path.abspath(state_dir))).hexdigest()[:12]}-"


class CgroupScopes:
    kind = "cgroup"

    def __init__(self, parent: Path, prefix: str) -> None:
        self.parent = parent  # clarad's own cgroup
        self.prefix_name = prefix  # of this state directory's operator cgroups

    @classmethod
    def create(cls, state_dir: Path) -> "CgroupScopes":
        scopes = cls(own_cgroup(), scope_prefix(state_dir))
        probe = scopes.scope("probe")
        probe.mkdir(exist_ok=True)  # OSError (read-only, EACCES) when the cgroup is not clarad's to divide
        try:
            if not (probe / "cgroup.kill").exists() and not (probe / "cgroup.freeze").exists():
                raise OSError("the kernel has neither cgroup.kill nor cgroup.freeze")
        finally:
            probe.rmdir()
        return scopes

    @property
    def base(self) -> Path:
        return self.parent / f"{self.prefix_name}*"

    def scope(self, label: str) -> Path:
        return self.parent / f"{self.prefix_name}{hashlib.sha256(label.encode()).hexdigest()[:24]}"

    def prefix(self, label: str) -> list[str]:
        scope = self.scope(label)
        scope.mkdir(exist_ok=True)
        return ["/bin/sh", "-c", 'echo 0 > "$0" && exec "$@"', str(scope / "cgroup.procs")]

    async def end(self, label: str, started: float, ended: float, leaders: Collection[int]) -> int:
        scope = self.scope(label)
        left = _kill_cgroup(scope)
        deadline = time.monotonic() + END_WAIT
        while _populated(scope) and time.monotonic() < deadline:
            await asyncio.sleep(POLL)
        _remove_cgroup(scope)
        return left

    def stop_leftovers(self, job_ids: Collection[str]) -> int:
        left = 0
        for scope in self.parent.glob(f"{self.prefix_name}*"):
            left += _kill_cgroup(scope)
            deadline = time.monotonic() + END_WAIT
            while _populated(scope) and time.monotonic() < deadline:
                time.sleep(POLL)
            _remove_cgroup(scope)
        return left


def _pids(scope: Path) -> list[int]:
    try:
        return [int(pid) for pid in (scope / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _kill_cgroup(scope: Path) -> int:
    left = _pids(scope)
    if not left:
        return 0
    try:
        (scope / "cgroup.kill").write_text("1")  # every process in it, at once, whatever session it made
    except FileNotFoundError:  # before Linux 5.14: freeze (no more forks), kill each, thaw
        (scope / "cgroup.freeze").write_text("1")
        _kill_all(_pids(scope))
        (scope / "cgroup.freeze").write_text("0")
    return len(left)


def _populated(scope: Path) -> bool:
    try:
        return "populated 1" in (scope / "cgroup.events").read_text()
    except OSError:
        return False


def _remove_cgroup(scope: Path) -> None:
    try:
        scope.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cgroup %s not removed: %s", scope, exc.strerror or exc)


def _kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


# -- descendants ----------------------------------------------------------------------------------


class Descendants:
    kind = "descendants"

    @classmethod
    def create(cls) -> "Descendants":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            log.warning("operators: cannot become a child subreaper (%s); what leaves an operator's session may "
                        "outlive it", os.strerror(ctypes.get_errno()))
        return cls()

    def prefix(self, label: str) -> list[str]:
        return []

    async def end(self, label: str, started: float, ended: float, leaders: Collection[int]) -> int:
        job, _, operator = label.partition("/")
        killed = 0
        for _round in range(10):  # what forked meanwhile is adopted in turn
            found = await asyncio.to_thread(_adopted, job, operator, started, ended, set(leaders))
            if not found:
                break
            _kill_all(found)
            killed += len(found)
            deadline = time.monotonic() + END_WAIT
            while not all(map(_gone, found)) and time.monotonic() < deadline:
                await asyncio.sleep(POLL)
            await asyncio.to_thread(_reap, set(leaders))
        return killed

    def stop_leftovers(self, job_ids: Collection[str]) -> int:
        """After a crash the adopted went to init: those whose environment names a job that was running."""
        if not job_ids:
            return 0
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.pid != os.getpid() and proc.environ().get(JOB_MARK) in job_ids:
                    found.append(proc.pid)
            except psutil.Error:
                continue
        _kill_all(found)
        return len(found)


def _adopted(job: str, operator: str, started: float, ended: float, leaders: set[int]) -> list[int]:
    """The processes clarad adopted that belong to the operator, with all their descendants."""
    found: list[int] = []
    for child in psutil.Process().children():
        if child.pid in leaders:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            try:
                env = child.environ()
                ours = env.get(JOB_MARK) == job and env.get(OPERATOR_MARK) == operator
            except psutil.AccessDenied:  # another user's (operator_user): by when it started
                ours = started <= child.create_time() <= ended
            if ours:
                found += [child.pid, *(p.pid for p in child.children(recursive=True))]
        except psutil.Error:
            continue
    return found


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _reap(leaders: set[int]) -> None:
    """Reap adopted processes that exited (never one clarad's own code waits for)."""
    for child in psutil.Process().children():
        if child.pid in leaders:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue
