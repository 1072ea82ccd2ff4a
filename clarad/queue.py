"""The jobs waiting to be placed: their order and the models they want, kept as jobs come and go;
and what a scheduling pass offers them (``Offer``).

A scheduling pass offers waiting jobs in ``jobs.queue_order`` and tells placement how many waiting
jobs want each model. Neither is recomputed over the whole queue per pass: the order is kept between
passes until a job arrives or a waiting job's priority class rises (``priority_aging_seconds``), and
the count of wanted models moves with each job added or removed.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Optional

from clarad.jobs import Priority, QueuedJob, order_key, queue_order
from clarad.memory import less
from clarad.placement import Decision, InstanceView, World
from clarad.pool import Instance


class JobQueue:
    def __init__(self) -> None:
        self._jobs: dict[str, QueuedJob] = {}  # in arrival order
        self._wanted: Counter[str] = Counter()
        self._wanting: dict[str, dict[str, QueuedJob]] = {}  # model -> the waiting jobs that want it
        self._order: Optional[list[QueuedJob]] = None
        self._removed: set[str] = set()  # left since the order was last read: dropped from it then, in one sweep
        self._valid: tuple[float, float, float] = (0.0, 0.0, 0.0)  # (from, until, aging) the order holds for

    def add(self, job: QueuedJob) -> None:
        if job.id in self._removed:  # back again (queued anew after its instance died): its old place goes first
            self._sweep()
        self._jobs[job.id] = job
        self._wanted.update(job.models)
        for name in job.models:
            self._wanting.setdefault(name, {})[job.id] = job
        if self._order is not None:  # into its place: the order holds for every time from ``since`` to ``until``
            since, until, aging = self._valid
            bisect.insort(self._order, job, key=lambda queued: order_key(queued, since, aging))
            self._valid = (since, min(until, next_change([job], since, aging)), aging)

    def remove(self, job: QueuedJob) -> None:
        del self._jobs[job.id]
        for name in job.models:
            self._wanted[name] -= 1
            if self._wanted[name] <= 0:
                del self._wanted[name]
            wanting = self._wanting[name]
            del wanting[job.id]
            if not wanting:
                del self._wanting[name]
        if self._order is not None:
            self._removed.add(job.id)  # not list.remove: a pass dropping many jobs would cost their count × the queue

    def _sweep(self) -> None:
        if self._order is not None and self._removed:
            self._order = [job for job in self._order if job.id not in self._removed]
        self._removed.clear()

    def find(self, job_id: str) -> Optional[QueuedJob]:
        return self._jobs.get(job_id)

    def __iter__(self) -> Iterator[QueuedJob]:
        return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job: object) -> bool:
        return isinstance(job, QueuedJob) and self._jobs.get(job.id) is job

    def wanting(self, name: str) -> list[QueuedJob]:
        """The waiting jobs that want model ``name``."""
        return list(self._wanting.get(name, {}).values())

    @property
    def wanted(self) -> Mapping[str, int]:
        """Waiting jobs wanting each model (read-only: copy it to change it)."""
        return self._wanted

    def ordered(self, now: float, aging: float) -> list[QueuedJob]:
        """The waiting jobs in the order they are offered an instance at ``now``."""
        since, until, valid_aging = self._valid
        if self._order is None or not since <= now < until or aging != valid_aging:
            self._order = queue_order(list(self._jobs.values()), now, aging)
            self._valid = (now, next_change(self._order, now, aging), aging)
            self._removed.clear()
        self._sweep()
        assert self._order is not None
        return list(self._order)


def next_change(jobs: list[QueuedJob], now: float, aging: float) -> float:
    """When the first of ``jobs`` rises a priority class by waiting (``queue_order``'s rule); the
    order cannot change before then unless jobs come or go."""
    soonest = math.inf
    for job in jobs:
        if job.priority is Priority.IMMEDIATE or job.priority.rank <= Priority.HIGH.rank:
            continue
        steps = int(max(0.0, now - job.created_at) // aging)
        if job.priority.rank - steps > Priority.HIGH.rank:
            soonest = min(soonest, job.created_at + (steps + 1) * aging - 1e-6)  # never after it, rounding aside
    return soonest


class Offer:
    """What the waiting jobs of one scheduling pass are offered, as each placement changes it."""

    def __init__(self, digests: dict[str, str], world: World, views: list[InstanceView], free: list[str]) -> None:
        self.digests = digests
        self.world = world  # its ``queued``: the wants of the jobs not yet offered in this pass
        self.views = {view.id: view for view in views}
        self.listed = views
        self.free = free
        self.idle = sum(view.idle for view in views)
        self.blocked: dict[tuple[str, ...], Decision] = {}  # with nothing free: the answer per model set

    def nothing_free(self) -> bool:
        return not self.free and not self.idle

    def take_wants(self, job: QueuedJob) -> None:
        """``job`` is being offered: its models are no longer another waiting job's."""
        queued = self.world.queued
        assert isinstance(queued, Counter)
        for name in job.models:
            queued[name] -= 1
            if queued[name] <= 0:
                del queued[name]

    def placed(self, instances: list[Instance], taken: Counter[str]) -> None:
        for instance in instances:
            self.views[instance.id] = instance.view()
        self.listed = list(self.views.values())
        self.idle = sum(view.idle for view in self.listed)
        self.free = [slot for slot in self.free if slot not in {instance.slot.id for instance in instances}]
        self.world = replace(self.world, memory=less(self.world.memory, taken))
