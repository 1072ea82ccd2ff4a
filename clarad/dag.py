"""A job's operators in DAG order: each starts once everything it reads from has completed, and
the job's GPUs are shared among those running at the same time.

The rules of which operator may run and which can never run are pure (``jobs.runnable_operators``,
``jobs.doomed_operators``); this module carries them out, records every operator's moves in the
store, and stops whatever still runs when it is cancelled (timeout, cancel, a lost instance).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Optional

from clarad import children
from clarad.jobs import JobStatus, OperatorState, QueuedJob, doomed_operators, runnable_operators
from clarad.operators import Outcome
from clarad.pipelines import Operator
from clarad.store import Store

log = logging.getLogger("clarad")

RunOne = Callable[[Operator, list[str]], Awaitable[Outcome]]  # an operator, the GPUs it was given


async def run_operators(job: QueuedJob, store: Store, gpus: list[str], run_one: RunOne) -> tuple[JobStatus, str]:
    """Run the DAG to its end; the job's status and reason. Stops nothing early but what it must:
    an operator whose upstream faulted is faulted without running, its siblings run on."""
    pipeline = job.pipeline
    share = GpuShare(gpus)
    states = {op.name: OperatorState.PENDING for op in pipeline.operators}
    tasks: dict[asyncio.Task[Outcome], str] = {}
    first_fault: Optional[str] = None

    async def one(op: Operator) -> Outcome:
        given = await share.take(op.requests.gpu)
        try:
            return await run_one(op, given)
        finally:
            await share.give(given)

    try:
        while True:
            for name in runnable_operators(pipeline, states):
                states[name] = OperatorState.RUNNING
                store.move_operator(job.id, name, "start", time.time())
                tasks[asyncio.create_task(one(pipeline.operator(name)))] = name
            if not tasks:
                break
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                name = tasks.pop(task)
                outcome = task.result()
                if outcome.ok:
                    states[name] = OperatorState.COMPLETED
                    store.move_operator(job.id, name, "complete", time.time(), None, outcome.exit_code)
                else:
                    states[name] = OperatorState.FAULTED
                    reason = f"{outcome.reason} (log: jobs/{job.id}/logs/{name}.log)"
                    store.move_operator(job.id, name, "fault", time.time(), reason, outcome.exit_code)
                    first_fault = first_fault or f'operator "{name}" {reason}'
                log.info("job %s: operator %s %s", job.id, name, outcome.reason)
            for name in doomed_operators(pipeline, states):
                states[name] = OperatorState.FAULTED
                store.move_operator(job.id, name, "fault", time.time(), "not run: an operator it reads from faulted")
    finally:
        for task in tasks:
            task.cancel()
        if tasks:  # each stops its operator's process group; nothing may interrupt that
            await children.wait_through_cancel(asyncio.gather(*tasks, return_exceptions=True))
    if first_fault:
        return JobStatus.FAULTED, first_fault
    return JobStatus.HEALTHY, f"all {len(pipeline.operators)} operator(s) completed"


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
