"""The Triton instance pool: every instance, its slot, its lease, its loaded models and its lifecycle.

Owned by the daemon's loop; an instance's state changes only here, through the transition table:

    starting --started--> loading --loaded--> leased --release--> idle --lease--> loading ...
    starting | loading | leased | idle --stop--> stopping --exited--> gone
    starting | loading | leased | idle --exited--> gone            (the process died)

``starting`` and ``loading`` instances are already leased to the job that caused them: ``loading``
means the job's models are not all ready yet, so an instance handed back in that state (a failed or
cancelled load, or one still running in Triton) is stopped, not made idle. A move the table does not
allow raises TransitionError naming the instance, its state and the event, and changes nothing.

The pool watches each server's process: an instance that dies is noticed the moment it exits, and
``on_lost`` tells whoever leased it. ``stop`` is the one way an instance is stopped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional, Protocol

from clarad.errors import TransitionError
from clarad.gpus import Slot
from clarad.placement import Action, Decision, InstanceView, Place
from clarad.targets import Target
from clarad.triton import Ports

log = logging.getLogger("clarad")


class Server(Protocol):
    """What the pool and the runner use of a running tritonserver (triton.TritonServer, or a
    modelled one in tests)."""

    id: str
    ports: Ports

    @property
    def pid(self) -> int: ...

    @property
    def alive(self) -> bool: ...

    async def load(self, model: str, config_json: str) -> None: ...

    async def unload(self, model: str) -> None: ...

    async def served_revision(self, model: str) -> Optional[str]: ...

    async def ready_models(self) -> set[str]: ...

    async def healthy(self) -> bool:
        """Running, and answering within a few seconds (a frozen process is not)."""
        ...

    def running(self) -> bool:
        """The process is there and not stopped, as the process table says (no call to it)."""
        ...

    def answered_within(self, seconds: float) -> bool:
        """A health probe succeeded in the last ``seconds``."""
        ...

    async def memory_used(self) -> int:
        """Bytes in use on the device the instance loads models onto."""
        ...

    async def wait_exit(self) -> str:
        """Wait until the process exits; one sentence on how it ended."""
        ...

    async def stop(self, grace: float) -> str:
        """Stop the process (not interruptible); one sentence on how it ended."""
        ...


class Launcher(Protocol):
    """Starts servers (triton.Launcher, or a modelled one in tests)."""

    async def start(self, instance_id: str, slot: Slot, timeout: float) -> Server: ...


class InstanceState(str, Enum):
    STARTING = "starting"
    LOADING = "loading"
    LEASED = "leased"
    IDLE = "idle"
    STOPPING = "stopping"
    GONE = "gone"


_S = InstanceState
_LIVE = {_S.STARTING, _S.LOADING, _S.LEASED, _S.IDLE}
TRANSITIONS: dict[str, tuple[frozenset[InstanceState], InstanceState]] = {
    "started": (frozenset({_S.STARTING}), _S.LOADING),
    "loaded": (frozenset({_S.LOADING}), _S.LEASED),
    "release": (frozenset({_S.LEASED}), _S.IDLE),
    "lease": (frozenset({_S.IDLE}), _S.LOADING),
    "stop": (frozenset(_LIVE), _S.STOPPING),
    "exited": (frozenset(_LIVE | {_S.STOPPING}), _S.GONE),
}


@dataclass
class Instance:
    id: str
    slot: Slot
    state: InstanceState
    job: Optional[str]
    server: Optional[Server] = None
    loaded: dict[str, str] = field(default_factory=dict)  # model -> digest
    last_used: dict[str, float] = field(default_factory=dict)
    loads: dict[str, int] = field(default_factory=dict)  # model -> times loaded here
    recycle: Optional[tuple[str, str]] = None  # (metric label, why): replace by a fresh process when next idle
    idle_since: float = 0.0

    def view(self) -> InstanceView:
        # An idle instance whose server has exited, before the pool has handled that exit, is not offered.
        idle = self.state is _S.IDLE and self.server is not None and self.server.alive
        return InstanceView(self.id, self.slot.id, idle, dict(self.loaded), dict(self.last_used),
                            Place(self.slot.device, self.slot.domain))

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "slot": self.slot.id,
            "state": self.state.value,
            "job": self.job,
            "grpc": self.server.ports.grpc_uri if self.server else None,
            "http": self.server.ports.http_uri if self.server else None,
            "pid": self.server.pid if self.server else None,
            "models": dict(self.loaded),
            "loads": dict(self.loads),
        }


class Pool:
    def __init__(self, slots: list[Slot], on_lost: Callable[[Instance, str], None]) -> None:
        self.slots = {slot.id: slot for slot in slots}
        self.instances: dict[str, Instance] = {}
        self.on_lost = on_lost  # (instance, how it ended): a live instance's process exited
        self._ids = itertools.count()
        self._watchers: set[asyncio.Task[None]] = set()

    # -- the state machine -------------------------------------------------------------------

    def move(self, instance: Instance, event: str) -> None:
        allowed, target = TRANSITIONS[event]
        if instance.state not in allowed:
            raise TransitionError(f"instance {instance.id} is {instance.state.value}: cannot {event}")
        instance.state = target
        if target is _S.GONE:
            self.instances.pop(instance.id, None)
        elif target is _S.IDLE:
            instance.job = None

    # -- what placement sees -------------------------------------------------------------------

    def views(self) -> list[InstanceView]:
        return [instance.view() for instance in self.instances.values()]

    def free_slots(self) -> list[str]:
        used = {instance.slot.id for instance in self.instances.values()}
        return [slot for slot in self.slots if slot not in used]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for instance in self.instances.values():
            counts[instance.state.value] = counts.get(instance.state.value, 0) + 1
        return counts

    def metrics_targets(self) -> tuple[Target, ...]:
        """Where each running server serves its own Prometheus metrics."""
        return tuple(Target(i.id, i.slot.id, i.server.ports.metrics_uri) for i in self.instances.values()
                     if i.server is not None and i.server.ports.metrics)

    # -- a job's lease -------------------------------------------------------------------------

    def lease(self, decision: Decision, job_id: Optional[str]) -> Instance:
        """Carry out a REUSE or START decision: the instance is now the job's alone (with no job: it
        is being warmed ahead of jobs)."""
        if decision.action is Action.START:
            assert decision.slot is not None
            instance = Instance(f"triton-{next(self._ids)}", self.slots[decision.slot], _S.STARTING, job_id)
            self.instances[instance.id] = instance
            return instance
        instance = self.instances[decision.instance or ""]
        self.move(instance, "lease")
        instance.job = job_id
        return instance

    def started(self, instance: Instance, server: Server) -> None:
        """The instance's tritonserver is up and ready; from now on its exit is noticed at once."""
        self.move(instance, "started")
        instance.server = server
        watcher = asyncio.ensure_future(self._watch(instance, server))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    def give_back(self, instance: Instance, now: float) -> bool:
        """End a job's lease: True if the instance is idle now; False if it must be stopped (it was
        never fully prepared for the job, its server is gone, or it is marked for recycling)."""
        if instance.state is not _S.LEASED or instance.server is None or not instance.server.alive:
            return False
        if instance.recycle is not None:
            return False
        for name in instance.loaded:
            instance.last_used[name] = now
        instance.idle_since = now
        self.move(instance, "release")
        return True

    # -- the end of an instance ----------------------------------------------------------------

    def stop(self, instance: Instance, grace: float) -> Coroutine[Any, Any, None]:
        """The one way an instance is stopped: its process group, its gRPC client, its record. It
        leaves the pool's choices at once (state stopping); await the result for the rest."""
        if instance.state in (_S.STOPPING, _S.GONE):
            return _nothing()
        self.move(instance, "stop")
        return self._stopped(instance, grace)

    async def _stopped(self, instance: Instance, grace: float) -> None:
        how = await instance.server.stop(grace) if instance.server is not None else "never started"
        self.move(instance, "exited")
        log.info("instance %s stopped (%s)", instance.id, how)

    async def stop_all(self, grace: float) -> None:
        await asyncio.gather(*(self.stop(instance, grace) for instance in list(self.instances.values())))
        for watcher in list(self._watchers):
            watcher.cancel()

    async def _watch(self, instance: Instance, server: Server) -> None:
        how = await server.wait_exit()
        if instance.state in (_S.STOPPING, _S.GONE):
            return  # stopped on purpose
        log.warning("instance %s %s", instance.id, how)
        if instance.job is not None:
            self.on_lost(instance, how)
        self.move(instance, "stop")
        await server.stop(0)  # whatever is left of its process group; closes the client, forgets it
        self.move(instance, "exited")


async def _nothing() -> None:
    return None
