"""The Triton instance pool: live bookkeeping of instances, their slots, leases and loaded models.

Owned by the daemon's loop (nothing else touches it). Lifecycle of an instance:

    starting --ready--> leased --release--> idle --lease--> leased ...
    any state --exited/stop--> removed (its slot is free again)

A starting instance is already leased to the job that caused it to start.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Optional

from clarad.errors import TransitionError
from clarad.gpus import Slot
from clarad.placement import Action, Decision, InstanceView
from clarad.triton import TritonServer


@dataclass
class Instance:
    id: str
    slot: Slot
    state: str  # "starting", "leased" or "idle"
    job: Optional[str]
    server: Optional[TritonServer] = None
    loaded: dict[str, str] = field(default_factory=dict)  # model -> digest
    last_used: dict[str, float] = field(default_factory=dict)
    loads: dict[str, int] = field(default_factory=dict)  # model -> times loaded here
    prepared_for: Optional[str] = None  # the job whose models were all loaded and ready here

    def view(self) -> InstanceView:
        return InstanceView(self.id, self.slot.id, self.state == "idle", dict(self.loaded), dict(self.last_used))

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "slot": self.slot.id,
            "state": self.state,
            "job": self.job,
            "grpc": self.server.ports.grpc_uri if self.server else None,
            "http": self.server.ports.http_uri if self.server else None,
            "pid": self.server.child.pid if self.server else None,
            "models": dict(self.loaded),
            "loads": dict(self.loads),
        }


class Pool:
    def __init__(self, slots: list[Slot]) -> None:
        self.slots = {slot.id: slot for slot in slots}
        self.instances: dict[str, Instance] = {}
        self._ids = itertools.count()

    def views(self) -> list[InstanceView]:
        return [instance.view() for instance in self.instances.values()]

    def free_slots(self) -> list[str]:
        used = {instance.slot.id for instance in self.instances.values()}
        return [slot for slot in self.slots if slot not in used]

    def lease(self, decision: Decision, job_id: str) -> Instance:
        """Apply a REUSE or START decision: the instance is now the job's alone."""
        if decision.action is Action.START:
            assert decision.slot is not None
            instance = Instance(f"triton-{next(self._ids)}", self.slots[decision.slot], "starting", job_id)
            self.instances[instance.id] = instance
            return instance
        instance = self.instances[decision.instance or ""]
        if instance.state != "idle":
            raise TransitionError(f"instance {instance.id} is {instance.state}: cannot lease to job {job_id}")
        instance.state, instance.job = "leased", job_id
        return instance

    def release(self, instance: Instance) -> None:
        if instance.state not in ("starting", "leased"):
            raise TransitionError(f"instance {instance.id} is {instance.state}: cannot release")
        now = time.time()
        for name in instance.loaded:
            instance.last_used[name] = now
        instance.state, instance.job = "idle", None

    def remove(self, instance: Instance) -> None:
        self.instances.pop(instance.id, None)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for instance in self.instances.values():
            counts[instance.state] = counts.get(instance.state, 0) + 1
        return counts
