"""Making an instance ready: starting its tritonserver and carrying out a placement decision's
unloads and loads, each load checked and measured. Used for a job's instance (runner.py) and for
warming one ahead of jobs (scheduler.py).

Every load hands Triton the revision's configuration stamped with its digest and reads the stamp
back (``repository.stamped_config``), and is measured (time, device memory) into the CostBook. An
unload that gives back less memory than the load took marks the instance for recycling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Optional

from clarad import repository
from clarad.config import Settings
from clarad.costs import CostBook
from clarad.errors import TritonError
from clarad.layout import Layout
from clarad.metrics import Metrics
from clarad.operators import Endpoints
from clarad.placement import Decision
from clarad.pool import Instance, Launcher, Pool
from clarad.store import Store

log = logging.getLogger("clarad")

RELEASE_WAIT = 5.0  # seconds an unload's memory has to come back before the instance counts as leaking
# An idle instance that answered a health probe this recently (the one at the end of its last job)
# and whose process is still running and not stopped is handed to the next job without asking
# Triton again: a stream of jobs pays no probe. One that hangs in between fails the operator's own
# calls, and the job faults with their error.
VOUCHED_SECONDS = 30.0


def vouched_for(instance: Instance) -> bool:
    """Whether ``instance`` may be used without a health probe (see VOUCHED_SECONDS)."""
    server = instance.server
    return server is not None and server.answered_within(VOUCHED_SECONDS) and server.running()


class Preparer:
    def __init__(self, settings: Settings, layout: Layout, store: Store, metrics: Metrics, pool: Pool,
                 launcher: Optional[Launcher], costs: CostBook) -> None:
        self.settings = settings
        self.layout = layout
        self.store = store
        self.metrics = metrics
        self.pool = pool
        self.launcher = launcher
        self.costs = costs

    async def prepare(self, instance: Instance, decision: Decision, wanted: Sequence[str]) -> Endpoints:
        """Carry out ``decision``: start the instance if it is new, unload and load what it says;
        every model of ``wanted`` ready before returning."""
        if instance.server is None:
            assert self.launcher is not None  # the scheduler places no job on an instance without one
            began = time.monotonic()
            started = await self.launcher.start(instance.id, instance.slot, self.settings.triton_start_timeout_seconds)
            self.costs.start_seconds = time.monotonic() - began
            self.pool.started(instance, started)
            log.info("instance %s started on %s: grpc %s, http %s", instance.id, instance.slot.id,
                     started.ports.grpc_uri, started.ports.http_uri)
        elif vouched_for(instance):
            if not decision.unload and not decision.load and set(wanted) <= instance.loaded.keys():
                return Endpoints(instance.server.ports.grpc_uri, instance.server.ports.http_uri)  # a warm hit
        elif not await instance.server.healthy():  # e.g. frozen (SIGSTOP) while idle: stopped, not waited on
            how = "did not answer a health probe; it is stopped"
            self.pool.on_lost(instance, how)  # no operator has started: the job is queued again
            raise TritonError(f"instance {instance.id} {how}")
        assert instance.server is not None
        server = instance.server
        for name in decision.unload:
            await self.unload(instance, name, "room")
        held: Optional[int] = None  # memory in use after the previous load: the next one's "before"
        for name in decision.load:
            held = await self._load(instance, name, held)
        missing = set(wanted) - await server.ready_models()
        if missing:
            raise TritonError(f"instance {instance.id}: model(s) {', '.join(sorted(missing))} not ready after loading")
        return Endpoints(server.ports.grpc_uri, server.ports.http_uri)

    async def _load(self, instance: Instance, name: str, held: Optional[int] = None) -> int:
        """Load the repository's current revision of ``name`` and confirm Triton serves that one; the
        memory in use after (``held``: in use before, when the previous load has just read it)."""
        assert instance.server is not None
        before = held if held is not None else await instance.server.memory_used()
        began = time.monotonic()
        instance.loaded.pop(name, None)
        for _attempt in range(3):
            digest = self.store.model_digests().get(name)
            if digest is None:
                raise TritonError(f"model {name} was removed from the repository before the job started")
            config = self.layout.models / name / "config.pbtxt"
            text = await asyncio.to_thread(config.read_text, encoding="utf-8")
            config_json = repository.stamped_config(text, digest, f"{name}/config.pbtxt")
            try:
                await asyncio.wait_for(instance.server.load(name, config_json), self.settings.load_timeout_seconds)
            except asyncio.TimeoutError:
                raise TritonError(f"loading {name} on {instance.id} took longer than load_timeout_seconds "
                                  f"({self.settings.load_timeout_seconds:g} s)") from None
            if self.store.model_digests().get(name) == digest:
                break  # else it was replaced while Triton read its files: load the new one
        else:
            raise TritonError(f"model {name} was replaced three times while loading; the job did not start")
        served = await instance.server.served_revision(name)
        if served != digest:
            raise TritonError(f"instance {instance.id} serves model {name} at revision {(served or 'unknown')[:12]} "
                              f"after loading revision {digest[:12]}")
        took = time.monotonic() - began
        after = await instance.server.memory_used()
        memory = after - before
        self.costs.record(name, digest, instance.slot.device, took, memory, time.time())
        instance.loaded[name] = digest
        instance.loads[name] = instance.loads.get(name, 0) + 1
        self.metrics.model_loads.labels(name).inc()
        self.metrics.model_load_seconds.observe(took)
        log.info("instance %s: loaded %s (revision %s) in %.2f s, %+.1f MiB on %s", instance.id, name, digest[:12],
                 took, memory / 2**20, instance.slot.device)
        bound = self.settings.instance_memory_max_bytes
        if bound and instance.slot.device == "cpu" and before + memory > bound:
            self.mark_for_recycling(instance, "memory", f"it holds {(before + memory) / 2**20:.0f} MiB, more than "
                                              f"instance_memory_max_bytes ({bound / 2**20:.0f} MiB)")
        return after

    async def unload(self, instance: Instance, name: str, why: str) -> None:
        """Unload ``name`` (``why``: "room" or "removed"); an unload that gives back less than
        ``recycle_unload_share`` of what the load took marks the instance for recycling (Triton does
        not always give memory back)."""
        assert instance.server is not None
        digest = instance.loaded.pop(name, None)
        instance.last_used.pop(name, None)
        before = await instance.server.memory_used()
        await instance.server.unload(name)
        self.metrics.model_unloads.labels(why).inc()
        cost = self.costs.known.get((name, digest or "", instance.slot.device))
        expected = self.settings.recycle_unload_share * cost.memory if cost is not None else 0.0
        # Memory comes back a moment after Triton reports the model unloaded (its backend's process
        # exits, its allocator returns pages): wait for it, within a bound, before anything is loaded
        # into that room.
        deadline = time.monotonic() + RELEASE_WAIT
        while (freed := before - await instance.server.memory_used()) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        log.info("instance %s: unloaded %s (%s; %.1f MiB given back)", instance.id, name,
                 "to make room" if why == "room" else "removed from the repository", freed / 2**20)
        if cost is not None and freed < expected:
            self.mark_for_recycling(instance, "leak", f"unloading {name} gave back {freed / 2**20:.0f} MiB of the "
                                              f"{cost.memory / 2**20:.0f} MiB its load took")

    def mark_for_recycling(self, instance: Instance, label: str, reason: str) -> None:
        if instance.recycle is None:
            instance.recycle = (label, reason)
            log.warning("instance %s will be replaced by a fresh one when next idle: %s", instance.id, reason)
