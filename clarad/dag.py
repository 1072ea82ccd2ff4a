"""A job's operators in DAG order: each starts once everything it reads from has completed, at most
``parallel`` at a time, sharing the job's GPUs and pinned to CPUs when they ask for some.

Which operator may run is pure (``jobs.DagProgress``); this module carries it out and records every
operator's moves in the store. The first operator to fault ends the job: what reads from it is
faulted without running, its running siblings are stopped, and nothing else starts. Cancelling the
whole (timeout, cancel, a lost instance) stops whatever still runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Optional

from clarad import children
from clarad.cpus import CpuPins
from clarad.errors import ClaradError
from clarad.jobs import DagProgress, JobStatus, QueuedJob
from clarad.operators import Outcome
from clarad.pipelines import Operator
from clarad.store import Store

log = logging.getLogger("clarad")

RunOne = Callable[[Operator, list[str], list[int]], Awaitable[Outcome]]  # an operator, its GPUs, its CPUs


async def run_operators(job: QueuedJob, store: Store, gpus: list[str], run_one: RunOne, cpus: CpuPins,
                        parallel: int) -> tuple[JobStatus, str]:
    """Run the DAG to its end; the job's status and reason."""
    pipeline = job.pipeline
    progress = DagProgress(pipeline)
    share = GpuShare(gpus)
    tasks: dict[asyncio.Task[Outcome], str] = {}
    first_fault: Optional[str] = None

    async def one(op: Operator) -> Outcome:
        given = await share.take(op.requests.gpu)
        try:
            pinned = cpus.take(op.requests.cpu or 0)
        except ClaradError as exc:
            await share.give(given)
            return Outcome(False, str(exc), None)
        try:
            return await run_one(op, given, pinned)
        finally:
            cpus.give(pinned)
            await share.give(given)

    def fault(name: str, reason: str, code: Optional[int] = None) -> None:
        store.move_operator(job.id, name, "fault", time.time(), reason, code)

    try:
        while True:
            if first_fault is None:
                for name in progress.start(parallel - len(tasks)):
                    store.move_operator(job.id, name, "start", time.time())
                    tasks[asyncio.create_task(one(pipeline.operator(name)))] = name
            if not tasks:
                break
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task not in tasks:
                    continue
                name = tasks.pop(task)
                outcome = task.result()
                log.info("job %s: operator %s %s", job.id, name, outcome.reason)
                if outcome.ok:
                    progress.complete(name)
                    store.move_operator(job.id, name, "complete", time.time(), None, outcome.exit_code)
                    continue
                reason = f"{outcome.reason} (log: jobs/{job.id}/logs/{name}.log)"
                fault(name, reason, outcome.exit_code)
                for doomed in progress.fault(name):
                    fault(doomed, "not run: an operator it reads from faulted")
                if first_fault is None:
                    first_fault = f'operator "{name}" {reason}'
                    await _stop_siblings(tasks, progress, fault, name)
                    for left in progress.pending():
                        progress.stop(left)
                        fault(left, f'not run: operator "{name}" faulted')
    finally:
        for task in tasks:
            task.cancel()
        if tasks:  # each stops its operator's process group; nothing may interrupt that
            await children.wait_through_cancel(asyncio.gather(*tasks, return_exceptions=True))
    if first_fault:
        return JobStatus.FAULTED, first_fault
    return JobStatus.HEALTHY, f"all {len(pipeline.operators)} operator(s) completed"


async def _stop_siblings(tasks: dict[asyncio.Task[Outcome], str], progress: DagProgress,
                         fault: Callable[[str, str], None], culprit: str) -> None:
    """Stop the operators still running once ``culprit`` faulted; each is faulted with that reason.
    Those that have already ended stay in ``tasks``, for their own outcome to be recorded."""
    running = {task: name for task, name in tasks.items() if not task.done()}
    for task in running:
        del tasks[task]
    for task in running:
        task.cancel()
    if running:
        await children.wait_through_cancel(asyncio.gather(*running, return_exceptions=True))
    for name in running.values():
        progress.stop(name)
        fault(name, f'stopped: operator "{culprit}" faulted')


class GpuShare:
    """The GPUs one job holds. Its operators take theirs from here and give them back when they end;
    one asking for more than is free now waits for a sibling (never for another job)."""

    def __init__(self, uuids: list[str]) -> None:
        self.free = set(uuids)
        self.freed = asyncio.Condition()

    async def take(self, count: int) -> list[str]:
        if count == 0:
            return []
        async with self.freed:
            await self.freed.wait_for(lambda: len(self.free) >= count)
            taken = sorted(self.free)[:count]
            self.free -= set(taken)
        return taken

    async def give(self, uuids: list[str]) -> None:
        if uuids:
            async with self.freed:
                self.free |= set(uuids)
                self.freed.notify_all()
