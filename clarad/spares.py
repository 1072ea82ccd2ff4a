"""A spare operator process, started ahead of need, so that a job's operator does not wait for its
cgroup.

Moving a process into a new cgroup waits for the kernel (an RCU grace period: 15 ms and more on a
busy host, longer than clarad's whole path from a drop to the operator's start). A spare pays that
wait before any job needs it: started as every operator is (children.start_process: its own session
and cgroup, through setpriv, recorded (as a "spare") before clarad awaits anything, marked for a crash), it runs
``spare_exec.py`` and waits on a Unix socket. ``use`` sends it the operator (argv, environment,
working directory) with its log file's descriptor; it execs the operator, which keeps its pid,
session and cgroup. Its record is relabelled to the operator, and a new spare is started a moment
later, off the operator's way. Two spares wait at most: operators beyond them start as usual.

Used with cgroup containment only (the one whose start has that wait). At shutdown the spare is
told to exit (EOF) and its cgroup removed; after a crash it is a recorded child, stopped at the
next start with the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Optional

from clarad import children

log = logging.getLogger("clarad")

PROGRAM = Path(__file__).with_name("spare_exec.py")
SPARES = 2  # waiting at once: a job arriving while one is being replaced finds the other
REFILL_DELAY = 0.05  # seconds after a spare is used before the next starts: the operator starts first
START_WAIT = 10.0  # seconds a new spare has to say it waits
MESSAGE_MAX = 64 * 1024  # bytes of an operator sent to a spare: within a socket's buffer, never blocks the loop
RETRY_AFTER = 60.0  # seconds without spares after one failed to start (e.g. operator_user cannot run Python)
EXIT_WAIT = 5.0  # seconds a spare told to exit has before it is stopped


@dataclass
class Spare:
    child: children.Child
    channel: socket.socket  # clarad's end; the spare's is its stdin
    identity: Optional[tuple[int, int]]  # the user it runs as (operator_user), or None
    watcher: Optional[asyncio.Task[None]] = None  # forgets it, should it exit while waiting


class Spares:
    def __init__(self, registry: children.ChildRegistry) -> None:
        self.registry = registry
        self.ready: list[Spare] = []  # waiting, oldest first
        self.identity: Optional[tuple[int, int]] = None  # the last operator's: the next spare's
        self.refilling: Optional[asyncio.Task[None]] = None
        self.watching: set[asyncio.Task[None]] = set()
        self.stopped = False
        self.retry_at = 0.0  # after a failed start, no new spare before this (monotonic time)

    def use(self, argv: Sequence[str], env: Mapping[str, str], cwd: Optional[Path], log_file: IO[Any],
            label: str, identity: Optional[tuple[int, int]]) -> Optional[children.Child]:
        """Hand the operator ``argv`` to the waiting spare and return it as the operator's child;
        None when no spare fits (none waiting yet, another user): then the caller starts it itself."""
        message = json.dumps({"argv": list(argv), "env": children.marked(env, self.registry),
                              "cwd": str(cwd or "/")}).encode()
        if len(message) > MESSAGE_MAX:
            return None
        spare = self.ready.pop(0) if self.ready else None
        self.identity = identity
        self._refill_later()
        if spare is None:
            return None
        if spare.identity != identity or spare.child.proc.returncode is not None:
            self._track(asyncio.ensure_future(self._dismiss(spare)))  # its watcher forgets it
            return None
        try:
            socket.send_fds(spare.channel, [b"\n"], [log_file.fileno()])
            spare.channel.sendall(message)
        except OSError as exc:  # it died meanwhile: its watcher forgets it
            log.warning("spare process %d could not take operator %s (%s); starting it as usual", spare.child.pid,
                        label, exc)
            spare.channel.close()
            return None
        spare.channel.close()  # EOF: the message is whole
        if spare.watcher is not None:
            spare.watcher.cancel()  # an operator now: its runner waits for it
        child = spare.child
        child.scope, child.label = child.label, label
        self.registry.store.record_child(child.pid, child.created, "operator", label)
        return child

    def expect(self) -> None:
        """An operator will start soon (a job was placed): have a spare waiting by then."""
        if not self.ready:
            self._refill_later()

    def _refill_later(self) -> None:
        if self.refilling is None and not self.stopped and time.monotonic() >= self.retry_at:
            self.refilling = asyncio.ensure_future(self._refill())

    async def _refill(self) -> None:
        try:
            await asyncio.sleep(REFILL_DELAY)
            while len(self.ready) < SPARES and not self.stopped:
                self.ready.append(await self._start(self.identity))
        except Exception as exc:  # no spare for a while: operators start as usual
            self.retry_at = time.monotonic() + RETRY_AFTER
            log.warning("starting a spare operator process failed (%s); operators start without one for %.0f s",
                        exc, RETRY_AFTER)
        finally:
            self.refilling = None

    def _track(self, task: "asyncio.Task[None]") -> None:
        self.watching.add(task)
        task.add_done_callback(self.watching.discard)

    async def _start(self, identity: Optional[tuple[int, int]]) -> Spare:
        ours, theirs = socket.socketpair()
        label = f"spare-{uuid.uuid4().hex[:12]}"
        try:
            child = await children.start_process([sys.executable, "-I", "-S", str(PROGRAM)], "operator", label,
                                          self.registry, identity, {}, Path("/"), asyncio.subprocess.DEVNULL,
                                          asyncio.subprocess.DEVNULL, stdin=theirs.fileno(), recorded_as="spare")
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        spare = Spare(child, ours, identity)
        try:  # ready once its interpreter has started and waits: not before
            ours.setblocking(False)
            said = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(ours, 1), START_WAIT)
            ours.setblocking(True)
            if said != b"r":
                raise OSError(f"it exited ({children.describe_exit(await child.proc.wait())})")
        except BaseException:
            await self._dismiss(spare)
            self.registry.forget(child.pid)
            await children.end_scope(child, self.registry)
            raise
        spare.watcher = asyncio.ensure_future(self._watch(spare))
        self._track(spare.watcher)
        return spare

    async def _watch(self, spare: Spare) -> None:
        """A spare that exits while waiting (killed by someone) is forgotten, its cgroup removed."""
        await spare.child.proc.wait()
        if spare in self.ready:
            self.ready.remove(spare)
            log.warning("spare process %d exited while waiting (%s)", spare.child.pid,
                        children.describe_exit(spare.child.proc.returncode or 0))
        spare.channel.close()
        self.registry.forget(spare.child.pid)
        await children.end_scope(spare.child, self.registry)

    async def _dismiss(self, spare: Spare) -> None:
        """Tell a spare to exit (EOF); stop it if it does not."""
        spare.channel.close()
        try:
            await asyncio.wait_for(asyncio.shield(spare.child.proc.wait()), EXIT_WAIT)
        except asyncio.TimeoutError:
            await children.stop_surely(spare.child, 0)

    async def stop(self) -> None:
        """At shutdown: no new spare; the waiting one exits and is forgotten."""
        self.stopped = True
        if self.refilling is not None:
            self.refilling.cancel()
            await asyncio.gather(self.refilling, return_exceptions=True)
        waiting, self.ready = self.ready, []
        for spare in waiting:
            await self._dismiss(spare)
        await asyncio.gather(*self.watching, return_exceptions=True)
