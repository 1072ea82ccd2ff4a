"""How clarad starts, records, stops and describes every child process (Triton and operators).

Each child leads its own process group (``start_new_session``), so stopping it reaches whatever it
started too (Triton's Python-backend stubs, an operator's helpers). Each is recorded in the store
before clarad awaits anything else, so after a crash the next start can find and stop leftovers.
Stopping is TERM to the group, a grace period, KILL to the group, reap, and never waits longer: a
child the kernel will not let clarad signal (EPERM) is reported and left running, still recorded.

Every child starts through util-linux's ``setpriv``, which drops what clarad holds before the
child's own program runs (see ``setpriv_argv``); it execs, so the recorded pid is the child's. An
operator may instead be handed to a spare process started the same way ahead of need (spares.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import pwd
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Optional, Protocol, Union

import psutil

from clarad.containment import Containment, Uncontained
from clarad.errors import ClaradError
from clarad.faults import crash_point
from clarad.survivors import MARK, NO_CAP_KILL, signal_group, stop_leftovers, stop_marked

log = logging.getLogger(__name__)

class ChildStore(Protocol):
    """Where records of children live (store.Store): they must survive a crash of clarad."""

    def record_child(self, pid: int, create_time: float, kind: str, label: str) -> None: ...

    def forget_child(self, pid: int) -> None: ...

    def children(self) -> list[dict[str, Any]]: ...

    def forget_children(self) -> None: ...


class SpareSource(Protocol):
    """Spare processes for operators (spares.Spares): ``use`` hands an operator to one, or None."""

    def use(self, argv: Sequence[str], env: Mapping[str, str], cwd: Optional[Path], log_file: IO[Any],
            label: str, identity: Optional[tuple[int, int]]) -> "Optional[Child]": ...

    def expect(self) -> None:
        """An operator will start soon: have a spare ready by then."""


class ChildRegistry:
    """Every child clarad started and has not yet reaped. A child is recorded right after it is
    started, before clarad awaits anything else, and forgotten once reaped; one that cannot be
    stopped stays recorded, so it is named in its job's reason and stopped at the next start."""

    def __init__(self, store: ChildStore, containment: Optional[Containment] = None, marker: str = "") -> None:
        self.store = store
        self.containment = containment or Uncontained()  # what reaches an operator's escaped processes
        self.live: set[int] = set()  # started and not yet reaped: asyncio waits for these, no one else
        self.marker = marker  # every child's MARK: finds one started but not recorded when clarad died
        self.spares: Optional[SpareSource] = None  # where operators may start without waiting for a cgroup

    def record(self, pid: int, create_time: float, kind: str, label: str) -> None:
        self.live.add(pid)
        self.store.record_child(pid, create_time, kind, label)

    def forget(self, pid: int) -> None:
        self.live.discard(pid)
        self.store.forget_child(pid)

    def stop_leftovers(self) -> None:
        """At start-up: stop whatever a previous clarad left running, then start a clean record:
        its recorded children; what its operators left outside their process groups (their cgroups,
        or their environment's job); and, by the mark in their environment, children it had started
        but not yet recorded when it died."""
        recorded = self.store.children()
        for description in stop_leftovers(recorded):
            log.warning("stopped %s, left running by a previous clarad", description)
        jobs = {row["label"].partition("/")[0] for row in recorded if row["kind"] == "operator"}
        escaped = self.containment.stop_leftovers(jobs)
        if escaped:
            log.warning("stopped %d process(es) that operators of a previous clarad had left outside their process "
                        "groups", escaped)
        if self.marker:
            for description in stop_marked(self.marker):
                log.warning("stopped %s, started by a previous clarad that died before recording it", description)
        self.store.forget_children()

    def left_running(self, job_id: str) -> str:
        return left_running(self.store.children(), job_id)


# How long a stop waits for the child to be reaped before it gives the child up as left running:
KILL_WAIT = 10.0  # after SIGKILL (tearing down a process that held a GPU can take seconds)
REFUSED_WAIT = 1.0  # after a refused one: only a child exiting by itself meanwhile can still end


class StopFailed(ClaradError):
    """A child clarad could not stop: it is left running and stays recorded in the store."""


@dataclass
class Child:
    proc: asyncio.subprocess.Process
    kind: str  # "triton" or "operator"
    label: str
    created: float = 0.0  # when it started (the clock of psutil's create_time)
    killed: bool = False  # clarad sent it SIGKILL (its grace was over): not a sign of the OOM killer
    scope: str = ""  # the label its containment knows it by, when not ``label`` (a spare's)

    @property
    def pid(self) -> int:
        return self.proc.pid


@functools.cache
def setpriv() -> str:
    """setpriv's path, looked up once it is found. Without it clarad refuses to start children
    rather than hand them its capabilities."""
    found = shutil.which("setpriv")
    if found is None:
        raise ClaradError(
            "setpriv (util-linux) not found on PATH: clarad starts every child through it to drop its "
            "capabilities, and starts none without it; install util-linux"
        )
    return found


def setpriv_argv(setpriv: str, argv: Sequence[str], identity: Optional[tuple[int, int]] = None) -> list[str]:
    """``argv`` run through setpriv, with empty inheritable and ambient capability sets: for a child
    that is not root, those two are all that could carry clarad's CAP_SETUID, CAP_CHOWN... across
    exec (ambient ones even into its effective set). With ``identity`` (uid, gid), as that user in
    that group alone: no supplementary groups (clarad's group opens its state)."""
    prefix = [setpriv, "--inh-caps=-all", "--ambient-caps=-all"]
    if identity is not None:
        uid, gid = identity
        prefix += [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    return [*prefix, "--", *argv]


def _check_runnable(program: str, env: Mapping[str, str], cwd: Optional[Path]) -> None:
    """Raise what exec would for a program that is not there: through setpriv, that would only be
    an exit status 127 and a line in the child's log."""
    target = os.path.join(cwd, program) if cwd is not None and "/" in program else program
    if shutil.which(target, path=env.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


async def spawn(
    argv: Sequence[str],
    *,
    kind: str,
    label: str,
    registry: ChildRegistry,
    env: Mapping[str, str],
    cwd: Optional[Path] = None,
    stdout: Optional[IO[Any]] = None,
    stderr: Union[IO[Any], int, None] = None,
    user: Optional[str] = None,
) -> Child:
    """Start ``argv`` in a new session, as ``user`` (in its own group only) when given; raises
    OSError when it cannot be executed, ClaradError without setpriv or an unknown user."""
    identity = None
    if user is not None:
        try:
            account = pwd.getpwnam(user)
        except KeyError:
            raise ClaradError(f"operator_user {user}: no such user") from None
        identity = (account.pw_uid, account.pw_gid)
    _check_runnable(argv[0], env, cwd)
    if kind == "operator" and registry.spares is not None and stdout is not None and stderr == asyncio.subprocess.STDOUT:
        spare = registry.spares.use(argv, env, cwd, stdout, label, identity)  # no await: nothing to cancel
        if spare is not None:
            return spare
    starting = asyncio.ensure_future(start_process(argv, kind, label, registry, identity, env, cwd, stdout, stderr))
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Cancelled while the process was being created (a sibling operator failed, a timeout): it
        # may exist already, so see the start through, record it, stop it, and only then go on.
        await wait_through_cancel(starting)
        if not starting.cancelled() and starting.exception() is None:
            child = starting.result()
            with contextlib.suppress(StopFailed):
                await stop_surely(child, 0)
                registry.forget(child.pid)
            await end_scope(child, registry)
        raise


async def start_process(argv: Sequence[str], kind: str, label: str, registry: ChildRegistry,
                 identity: Optional[tuple[int, int]], env: Mapping[str, str], cwd: Optional[Path],
                 stdout: Union[IO[Any], int, None], stderr: Union[IO[Any], int, None],
                 stdin: Union[IO[Any], int] = asyncio.subprocess.DEVNULL, recorded_as: str = "") -> Child:
    """Start and record one child (see ``spawn``); ``recorded_as``: its kind in the store, when not ``kind``."""
    inside = registry.containment.prefix(label) if kind == "operator" else []
    proc = await asyncio.create_subprocess_exec(
        *inside, *setpriv_argv(setpriv(), argv, identity),
        env=marked(env, registry),
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    crash_point("child-started")
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        created = time.time()
    registry.record(proc.pid, created, recorded_as or kind, label)
    return Child(proc, kind, label, created)


def marked(env: Mapping[str, str], registry: ChildRegistry) -> dict[str, str]:
    """A child's environment, with the mark that finds it after a crash (survivors.py)."""
    return {**env, MARK: registry.marker} if registry.marker else dict(env)


async def stop(child: Child, grace: float) -> int:
    """TERM the child's group, KILL it after ``grace`` seconds, reap; return the exit status.

    Raises StopFailed (and logs it) when the child is still there KILL_WAIT seconds after the KILL,
    or REFUSED_WAIT seconds after the kernel refused the signals (it runs as operator_user and
    clarad lacks CAP_KILL). Never waits longer: cancel, timeout and shutdown must finish."""
    refused = False
    if child.proc.returncode is None:
        refused = not signal_group(child.pid, signal.SIGTERM)
        signal_group(child.pid, signal.SIGCONT)  # a stopped (SIGSTOP) group can only act on TERM once resumed
        if not refused:  # a refused TERM leaves nothing to wait the grace for
            try:
                # The whole group gets the grace: a wrapper leading it (bwrap) may end at TERM before
                # the program it started does.
                await asyncio.wait_for(_group_ended(child), grace)
            except asyncio.TimeoutError:
                if grace > 0:
                    log.warning("%s %s did not stop within %.0f s: killing it", child.kind, child.label, grace)
    child.killed = child.killed or child.proc.returncode is None
    refused = not signal_group(child.pid, signal.SIGKILL) or refused  # whatever is left of the group
    try:
        return await asyncio.wait_for(child.proc.wait(), REFUSED_WAIT if refused else KILL_WAIT)
    except asyncio.TimeoutError:
        why = NO_CAP_KILL if refused else f"still running {KILL_WAIT:g} s after SIGKILL"
        error = StopFailed(f"{child.kind} {child.label} (pid {child.pid}) could not be stopped and was left running: "
                           f"{why}")
        log.error("%s", error)
        raise error from None


GROUP_POLL = 0.05  # seconds between looks at what is left of a group whose leader has exited


async def _group_ended(child: Child) -> None:
    """Wait until the child has exited and no live process is left in its process group."""
    await child.proc.wait()
    while _group_members(child.pid):
        await asyncio.sleep(GROUP_POLL)


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return members


async def wait_through_cancel(task: "asyncio.Future[Any]") -> None:
    """Wait until ``task`` is done, even if the caller is cancelled meanwhile: cleanup (stopping a
    process group, stopping a job's operators) must finish, or children would outlive it."""
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            continue


async def stop_surely(child: Child, grace: float) -> int:
    """``stop``, not interruptible by a further cancellation of the caller (StopFailed passes)."""
    task = asyncio.ensure_future(stop(child, grace))
    await wait_through_cancel(task)
    return task.result()


def resident_mb(pid: int) -> int:
    """Resident memory of a process and all its descendants, in MB (0 once it is gone)."""
    return resident_bytes(pid) // (1024 * 1024)


def resident_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (0 once it is gone)."""
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
    return total


async def end_scope(child: Child, registry: ChildRegistry) -> None:
    """After an operator's process group was stopped (or given up on): stop what it started outside
    the group (another session, a double fork), as its containment finds them. A cgroup takes the
    operator itself too, even where signals were refused (cgroup.kill needs no CAP_KILL): one given
    up on that is gone now is forgotten, not named as left running. Not interruptible."""
    if child.kind != "operator":
        return
    ending = asyncio.ensure_future(_end_scope(child, registry))
    await wait_through_cancel(ending)
    if ending.exception() is None and ending.result():
        log.warning("operator %s left %d process(es) outside its process group: stopped", child.label,
                    ending.result())
    elif ending.exception() is not None:
        log.error("operator %s: stopping what it left outside its process group failed", child.label,
                  exc_info=ending.exception())


async def _end_scope(child: Child, registry: ChildRegistry) -> int:
    stopped = await registry.containment.end(child.scope or child.label, child.created, time.time(), registry.live)
    if child.pid in registry.live:  # given up on by stop(): gone with its cgroup?
        try:
            await asyncio.wait_for(child.proc.wait(), REFUSED_WAIT)
        except asyncio.TimeoutError:
            return stopped
        registry.forget(child.pid)
        log.info("operator %s (pid %d) stopped with its cgroup", child.label, child.pid)
    return stopped


def stop_group_remains(child: Child) -> None:
    """After the leader exited: KILL anything it left running in its group."""
    if not signal_group(child.pid, signal.SIGKILL):
        log.error("what %s %s (pid %d) left in its process group keeps running: %s", child.kind, child.label,
                  child.pid, NO_CAP_KILL)


def left_running(recorded: list[dict[str, Any]], job_id: str) -> str:
    """For a job's reason: its operators still recorded once it ended, i.e. those ``stop`` gave up on."""
    stuck = [f'"{row["label"].partition("/")[2]}" (pid {row["pid"]})' for row in recorded
             if row["kind"] == "operator" and row["label"].startswith(f"{job_id}/")]
    if not stuck:
        return ""
    return f"; operator {', '.join(stuck)} could not be stopped and was left running (see clarad's log)"


def describe_exit(returncode: int, killed_by_clarad: bool = False) -> str:
    """One sentence for an exit status, as a person reading `clarad jobs show` wants it."""
    if returncode == 0:
        return "exited with code 0"
    if returncode > 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    if -returncode == signal.SIGKILL:
        hint = " (sent by clarad: it did not stop in time)" if killed_by_clarad else " (perhaps out of memory)"
    else:
        hint = ""
    return f"killed by {name}{hint}"
